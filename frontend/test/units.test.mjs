// Unit tests of the page's pure pieces, on Node's built-in runner: `npm test`.
// The page as a whole is tested in Chromium (emporium/dashboard/tests/test_browser.py).

import assert from "node:assert/strict";
import { test } from "node:test";

import { fitBounds } from "../src/positions.js";
import { backoffDelay, socketUrl } from "../src/socket.js";

test("the socket follows the page's scheme and host", () => {
  assert.equal(
    socketUrl("/ws/dashboard/", { protocol: "https:", host: "shop.example.com" }),
    "wss://shop.example.com/ws/dashboard/",
  );
  assert.equal(
    socketUrl("/ws/dashboard/", { protocol: "http:", host: "127.0.0.1:8000" }),
    "ws://127.0.0.1:8000/ws/dashboard/",
  );
});

test("reconnection delays double up to thirty seconds, from the upper half", () => {
  const lowest = () => 0;
  const highest = () => 1;
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5, 6, 10].map((attempt) => backoffDelay(attempt, lowest)),
    [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000],
  );
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5, 6, 10].map((attempt) => backoffDelay(attempt, highest)),
    [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000],
  );
});

test("fitted bounds keep every point inside the box, with a margin", () => {
  const points = [
    [13.3, 52.4],
    [13.5, 52.6],
    [13.41, 52.52],
  ];
  const bounds = fitBounds(points, 800, 480);
  for (const point of points) {
    const [x, y] = bounds.project(point);
    assert.ok(x > 0 && x < 800, `x ${x}`);
    assert.ok(y > 0 && y < 480, `y ${y}`);
  }
  // North is up, east is right.
  const [westX, southY] = bounds.project([13.3, 52.4]);
  const [eastX, northY] = bounds.project([13.5, 52.6]);
  assert.ok(eastX > westX);
  assert.ok(northY < southY);
  // The same distance north and east looks the same length near the middle latitude.
  const [, middleY] = bounds.project([13.4, 52.5]);
  const [, upY] = bounds.project([13.4, 52.501]);
  const [middleX] = bounds.project([13.4, 52.5]);
  const eastDegrees = 0.001 / Math.cos((52.5 * Math.PI) / 180);
  const [rightX] = bounds.project([13.4 + eastDegrees, 52.5]);
  assert.ok(Math.abs(middleY - upY - (rightX - middleX)) < 1e-6);
});

test("a single point is shown in the middle, not blown up to infinity", () => {
  const bounds = fitBounds([[13.405, 52.52]], 800, 480);
  const [x, y] = bounds.project([13.405, 52.52]);
  assert.equal(x, 400);
  assert.equal(y, 240);
  const [nearX] = bounds.project([13.406, 52.52]);
  assert.ok(Number.isFinite(nearX) && nearX > 400 && nearX < 800);
});
