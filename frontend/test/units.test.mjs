// Unit tests of the page's pure pieces, on Node's built-in runner: `npm test`.
// The page as a whole is tested in Chromium (emporium/dashboard/tests/test_browser.py).

import assert from "node:assert/strict";
import { test } from "node:test";

import { fitBounds, labelBox, placeLabels, scaleBar } from "../src/positions.js";
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

test("the scale bar is the longest 1, 2 or 5 length that fits, labelled in m or km", () => {
  assert.deepEqual(scaleBar(1, 160), { metres: 100, pixels: 100, label: "100 m" });
  assert.deepEqual(scaleBar(10, 160), { metres: 1000, pixels: 100, label: "1 km" });
  const bar = scaleBar(3.7, 160);
  assert.equal(bar.metres, 500);
  assert.ok(bar.pixels <= 160 && bar.pixels > 160 / 2.5);
  // A fitted view's metres per pixel follow its latitude span.
  const bounds = fitBounds([[13.4, 52.5], [13.41, 52.51]], 800, 480);
  const metres = 0.01 * (1 + 2 * 0.08) * ((6371008.8 * Math.PI) / 180);
  assert.ok(Math.abs(bounds.metresPerPixel * 480 - metres) / metres < 0.01);
});

test("labels of markers close together do not overlap each other or the markers", () => {
  // Device 20 just left of device 7: both labels at the right would run together ("207").
  const markers = [
    { x: 400, y: 240, text: "20" },
    { x: 426, y: 240, text: "7" },
    { x: 410, y: 252, text: "13" },
  ];
  const places = placeLabels(markers, 800, 480);
  const boxes = places.map((place, index) => labelBox(place.x, place.y, place.anchor, markers[index].text));
  for (let i = 0; i < boxes.length; i += 1) {
    for (let j = i + 1; j < boxes.length; j += 1) {
      const a = boxes[i];
      const b = boxes[j];
      const apart = a.right <= b.left || b.right <= a.left || a.bottom <= b.top || b.bottom <= a.top;
      assert.ok(apart, `labels ${markers[i].text} and ${markers[j].text} overlap`);
    }
    for (const marker of markers) {
      const box = boxes[i];
      const clear =
        box.right <= marker.x - 7 || box.left >= marker.x + 7 || box.bottom <= marker.y - 7 || box.top >= marker.y + 7;
      assert.ok(clear, `label ${markers[i].text} covers the marker at ${marker.x},${marker.y}`);
    }
  }
});

test("a label at the edge is placed inside the map", () => {
  const [place] = placeLabels([{ x: 795, y: 5, text: "12" }], 800, 480);
  const box = labelBox(place.x, place.y, place.anchor, "12");
  assert.ok(box.left >= 0 && box.right <= 800 && box.top >= 0 && box.bottom <= 480);
});
