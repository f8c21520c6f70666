"""Shoppers and a dispatcher against any Emporium deployment, with Locust.

    make loadtest HOST=https://shop.example USERS=50 DURATION=5m
    .venv/bin/locust -f bench/locustfile.py --headless --host http://127.0.0.1:8000 \
        --users 20 --spawn-rate 5 --run-time 60s

What a shopper does, by weight (each step is one named request in Locust's
figures, ``STEPS`` below): browse the catalog and filter it (10), search (5),
look at a product (8), read their orders (3), follow a shipment (2), and buy:
add to the cart, check out with an ``Idempotency-Key``, and pay with the
simulated provider's ``tok_visa`` (2). A dispatcher (one, when staff
credentials are given) gives paid orders to a courier device and starts the
shipment, so that shoppers have shipments to follow.

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
    "filter": "catalog: filter",
    "search": "search",
    "product": "product",
    "cart": "cart: add",
    "checkout": "checkout",
    "pay": "pay",
    "orders": "my orders",
    "shipments": "my shipments",
    "track": "shipment: track",
    "login": "login",
    "device": "dispatch: device",
    "dispatch": "dispatch: ship",
    "start": "dispatch: start",
}
SEARCH_WORDS = ["steel", "classic", "wireless", "cotton", "lamp", "tea", "monitor", "shoe"]
ORDERINGS = ["price", "-price", "-created_at", "name"]


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
    weight = 10
    wait_time = between(WAIT_MIN, WAIT_MAX)

    def on_start(self) -> None:
        with _customer_lock:
            self.username, self.password = next(_next_customer)
        self.product_ids: list[int] = []
        self.sign_in()

    def _remember(self, response: Any) -> None:
        if response.status_code == 200:
            self.product_ids = [
                item["id"] for item in response.json()["results"] if item.get("stock_quantity")
            ] or self.product_ids

    @task(6)
    def browse(self) -> None:
        self._remember(self.call("GET", "/api/products/", "catalog", params={"page_size": 20}))

    @task(4)
    def browse_filtered(self) -> None:
        low = random.choice([0, 10, 50, 100])
        params = {
            "min_price": low,
            "max_price": low + random.choice([50, 200, 1000]),
            "in_stock": "true",
            "ordering": random.choice(ORDERINGS),
            "page_size": 20,
        }
        self._remember(self.call("GET", "/api/products/", "filter", params=params))

    @task(5)
    def search(self) -> None:
        self.call("GET", "/api/search/", "search", params={"q": random.choice(SEARCH_WORDS)})

    @task(8)
    def view_product(self) -> None:
        if not self.product_ids:
            self.browse()
        if self.product_ids:
            product = random.choice(self.product_ids)
            self.call("GET", f"/api/products/{product}/", "product")

    @task(2)
    def buy(self) -> None:
        """Add one product to the cart, check out, pay with the simulator's good card."""
        if not self.product_ids:
            self.browse_filtered()
        if not self.product_ids:
            return
        product = random.choice(self.product_ids)
        added = self.call("POST", "/api/cart/items/", "cart", json={"product": product})
        if added.status_code != 201:
            return
        order = self.call(
            "POST", "/api/orders/", "checkout", headers={"Idempotency-Key": str(uuid.uuid4())}
        )
        if order.status_code != 201:
            return
        order_id = order.json()["id"]
        paid = self.call(
            "POST",
            f"/api/orders/{order_id}/payments/",
            "pay",
            json={"payment_method": "card", "token": "tok_visa"},
        )
        if 200 <= paid.status_code < 300:
            paid_orders.append(order_id)

    @task(3)
    def my_orders(self) -> None:
        self.call("GET", "/api/orders/", "orders")

    @task(2)
    def follow_shipment(self) -> None:
        shipments = self.call("GET", "/api/shipments/", "shipments")
        if shipments.status_code == 200 and shipments.json()["results"]:
            shipment = random.choice(shipments.json()["results"])
            self.call("GET", f"/api/shipments/{shipment['id']}/track/", "track")


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
