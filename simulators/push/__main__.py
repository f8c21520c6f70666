from simulators.push.server import main

main()
