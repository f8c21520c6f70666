// A WebSocket to the dashboard stream that reconnects with capped, jittered backoff.
//
// Close codes 4401 (not signed in) and 4403 (not staff) are final: reconnecting
// would be refused the same way, so the page asks the user to sign in again.

const FINAL_CLOSE_CODES = new Map([
  [4401, "Signed out — reload the page to sign in again."],
  [4403, "This account may not watch the dashboard."],
]);
const FIRST_DELAY_MS = 1000;
const MAX_DELAY_MS = 30000;

export function socketUrl(path, location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

// Delay before reconnection attempt number `attempt` (0-based): doubling from
// one second up to thirty, each drawn from its upper half so that many pages
// dropped at once do not all come back in the same instant.
export function backoffDelay(attempt, random = Math.random) {
  const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** attempt);
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

export function connect({ url, onEvent, onState }) {
  let attempt = 0;
  let socket = null;
  let retryTimer = null;

  function open() {
    onState({ state: "connecting", text: "Connecting…" });
    socket = new WebSocket(url);
    socket.addEventListener("open", () => {
      onState({ state: "open", text: "Live" });
    });
    socket.addEventListener("message", (message) => {
      attempt = 0; // the stream works again: the next drop starts from a short delay
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return; // not ours to draw
      }
      if (event && typeof event === "object") onEvent(event);
    });
    socket.addEventListener("close", (closed) => {
      socket = null;
      const final = FINAL_CLOSE_CODES.get(closed.code);
      if (final) {
        onState({ state: "refused", text: final, code: closed.code });
        return;
      }
      const delay = backoffDelay(attempt);
      attempt += 1;
      onState({
        state: "closed",
        text: `Disconnected — retrying in ${Math.ceil(delay / 1000)} s`,
        code: closed.code,
      });
      retryTimer = window.setTimeout(open, delay);
    });
  }

  open();
  return {
    close() {
      window.clearTimeout(retryTimer);
      if (socket) socket.close(1000);
    },
  };
}
