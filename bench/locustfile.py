"""Shoppers and a dispatcher against any Emporium deployment, with Locust.

    make loadtest HOST=https://shop.example USERS=50 DURATION=5m
    .venv/bin/locust -f bench/locustfile.py --headless --host http://127.0.0.1:8000 \
        --users 20 --spawn-rate 5 --run-time 60s

The main user is the shopper's journey that ``python -m bench.journey`` measures
(docs/performance_tuning.md, "The journey"): a shopper signs in once, then
repeats, with a think time between steps: browse two list pages (the first and
its ``next``), open a product, search, add two products to the cart, view the
cart, check out, pay with the simulated provider's ``tok_visa``, and open their
orders. Each step is one named request in Locust's figures (``STEPS`` below). A
dispatcher (one, when staff credentials are given) gives paid orders to a
courier device and starts the shipment.

Accounts, from the environment (the defaults are the embedded profile's demo
accounts, docs in README.md):

* ``LOADTEST_CUSTOMERS``: ``user:password`` pairs, comma-separated; shoppers
  take them in turn. Default ``customer01`` … ``customer20`` / ``emporium-demo``.
* ``LOADTEST_STAFF``: ``user:password`` of the dispatcher (needs the delivery
  and order permissions, e.g. the admin role); empty for no dispatcher.
  Default ``admin:emporium-admin``.
* ``LOADTEST_WAIT``: ``min,max`` seconds a shopper thinks between steps
  (default ``1,5``).

Each shopper signs in once (the login limits are per address: 30 a minute by
default, so spawn at most about 20 shoppers a minute from one address, or raise
``THROTTLE_LOGIN_IP``), and again if its token expires. Only send this to a
deployment you own: it places and pays orders.
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import uuid
from collections import deque
from typing import Any

from locust import HttpUser, between, events, task

# The name of each step in Locust's figures; the suite's test checks each was made.
STEPS = {
    "catalog": "catalog: list",
    "next page": "catalog: next page",
    "product": "product",
    "search": "search",
    "cart": "cart: add",
    "cart view": "cart: view",
    "checkout": "checkout",
    "pay": "pay",
    "orders": "my orders",
    "login": "login",
    "device": "dispatch: device",
    "dispatch": "dispatch: ship",
    "start": "dispatch: start",
}
SEARCH_WORDS = ["steel", "classic", "wireless", "cotton", "lamp", "tea", "monitor", "shoe"]


def _accounts(variable: str, default: str) -> list[tuple[str, str]]:
    raw = os.environ.get(variable, default)
    pairs = [entry.split(":", 1) for entry in raw.split(",") if entry.strip()]
    return [(user.strip(), password) for user, password in pairs]


CUSTOMERS = _accounts(
    "LOADTEST_CUSTOMERS", ",".join(f"customer{n:02d}:emporium-demo" for n in range(1, 21))
)
STAFF = _accounts("LOADTEST_STAFF", "admin:emporium-admin")
WAIT_MIN, WAIT_MAX = (float(part) for part in os.environ.get("LOADTEST_WAIT", "1,5").split(","))

_next_customer = itertools.cycle(CUSTOMERS)
_customer_lock = threading.Lock()
# Orders paid by shoppers, waiting for the dispatcher (one process: gevent shares memory).
paid_orders: deque[int] = deque(maxlen=10_000)


class ApiUser(HttpUser):
    abstract = True
    username = ""
    password = ""

    def sign_in(self) -> bool:
        with self.client.post(
            "/api/auth/login/",
            json={"username": self.username, "password": self.password},
            name=STEPS["login"],
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"login as {self.username}: {response.status_code}")
                return False
            self.client.headers["Authorization"] = f"Bearer {response.json()['access']}"
            return True

    def call(self, method: str, path: str, step: str, **kwargs: Any) -> Any:
        """One request named after its step; signs in again once if the token expired."""
        response = self.client.request(method, path, name=STEPS[step], **kwargs)
        if response.status_code == 401 and self.sign_in():
            response = self.client.request(method, path, name=STEPS[step], **kwargs)
        return response


class Shopper(ApiUser):
    """The journey of bench/journey.py, one step per think time."""

    weight = 10
    wait_time = between(WAIT_MIN, WAIT_MAX)

    def on_start(self) -> None:
        with _customer_lock:
            self.username, self.password = next(_next_customer)
        self.sign_in()

    @task
    def journey(self) -> None:
        listed = self.call("GET", "/api/products/", "catalog", params={"page_size": 20})
        if listed.status_code != 200:
            return
        page = listed.json()
        products = [item["id"] for item in page["results"] if item.get("stock_quantity")]
        # The second page: the first one's next link (another ordering in a small catalog).
        self._think()
        self.call(
            "GET", page.get("next") or "/api/products/?ordering=price&page_size=20", "next page"
        )
        if len(products) < 2:
            return
        self._think()
        self.call("GET", f"/api/products/{random.choice(products)}/", "product")
        self._think()
        self.call("GET", "/api/search/", "search", params={"q": random.choice(SEARCH_WORDS)})
        for product in random.sample(products, 2):
            self._think()
            added = self.call("POST", "/api/cart/items/", "cart", json={"product": product})
            if added.status_code != 201:
                return
        self._think()
        self.call("GET", "/api/cart/", "cart view")
        self._think()
        order = self.call("POST", "/api/orders/", "checkout")
        if order.status_code != 201:
            return
        order_id = order.json()["id"]
        self._think()
        paid = self.call(
            "POST",
            f"/api/orders/{order_id}/payments/",
            "pay",
            json={"payment_method": "card", "token": "tok_visa"},
        )
        if 200 <= paid.status_code < 300:
            paid_orders.append(order_id)
        self._think()
        self.call("GET", "/api/orders/", "orders")

    def _think(self) -> None:
        self.wait()


class Dispatcher(ApiUser):
    """Gives paid orders to a courier device and starts the shipments: one per run."""

    fixed_count = 1 if STAFF else 0
    wait_time = between(WAIT_MIN / 2, WAIT_MAX / 2)

    def on_start(self) -> None:
        self.username, self.password = STAFF[0]
        self.device_id: int | None = None
        if not self.sign_in():
            return
        device = self.call(
            "POST", "/api/devices/", "device", json={"name": f"load test {uuid.uuid4().hex[:8]}"}
        )
        if device.status_code == 201:
            self.device_id = device.json()["id"]

    @task
    def dispatch(self) -> None:
        if self.device_id is None or not paid_orders:
            return
        order_id = paid_orders.popleft()
        with self.client.post(
            "/api/shipments/",
            json={"order": order_id, "device": self.device_id},
            name=STEPS["dispatch"],
            catch_response=True,
        ) as response:
            if response.status_code == 409 and "order_not_shippable" in response.text:
                # The payment has not settled yet (a worker charges it): try again later.
                response.success()
                paid_orders.append(order_id)
                return
            if response.status_code != 201:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return
            shipment_id = response.json()["id"]
        self.call("POST", f"/api/shipments/{shipment_id}/start/", "start")


@events.quitting.add_listener
def _no_failures(environment: Any, **_: Any) -> None:
    """Exit status 1 when any request failed, whatever Locust's own default."""
    if environment.stats.total.num_failures:
        environment.process_exit_code = 1
