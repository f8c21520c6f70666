// Live courier positions drawn in an SVG: no map tiles, just the points, their
// recent trails, and bounds that fit whatever is on screen.

const SVG = "http://www.w3.org/2000/svg";
const TRAIL_POINTS = 60;
const FORGET_AFTER_MS = 10 * 60 * 1000; // a device silent this long leaves the view
const MIN_SPAN_DEGREES = 0.004; // about 400 m: a lone point is not zoomed in to nothing
const PADDING = 0.08;
// Metres in one degree of latitude (the mean Earth radius, as emporium/delivery/simulation.py).
const METRES_PER_DEGREE = (6371008.8 * Math.PI) / 180;
const MARKER_RADIUS = 7;
const LABEL_FONT_PX = 12;
const LABEL_CHAR_PX = 7.5; // a digit's advance at 12 px, a little generous
const SCALE_MAX_PX = 160;

function colourFor(deviceId) {
  return `hsl(${Math.round((deviceId * 137.508) % 360)} 65% 42%)`;
}

function element(name, attributes) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  return node;
}

// Fits longitude/latitude bounds into a width x height box, keeping distances
// true in both directions near the middle latitude (equirectangular projection).
export function fitBounds(points, width, height) {
  let south = Infinity;
  let north = -Infinity;
  let west = Infinity;
  let east = -Infinity;
  for (const [longitude, latitude] of points) {
    south = Math.min(south, latitude);
    north = Math.max(north, latitude);
    west = Math.min(west, longitude);
    east = Math.max(east, longitude);
  }
  const middleLatitude = (south + north) / 2;
  const shrink = Math.max(Math.cos((middleLatitude * Math.PI) / 180), 0.01);
  let spanLatitude = Math.max(north - south, MIN_SPAN_DEGREES);
  let spanLongitude = Math.max(east - west, MIN_SPAN_DEGREES / shrink);
  spanLatitude *= 1 + 2 * PADDING;
  spanLongitude *= 1 + 2 * PADDING;
  const scale = Math.min(width / (spanLongitude * shrink), height / spanLatitude);
  const centreLongitude = (west + east) / 2;
  const centreLatitude = middleLatitude;
  return {
    south,
    north,
    west,
    east,
    metresPerPixel: METRES_PER_DEGREE / scale,
    project([longitude, latitude]) {
      return [
        width / 2 + (longitude - centreLongitude) * shrink * scale,
        height / 2 - (latitude - centreLatitude) * scale,
      ];
    },
  };
}

// The longest round length (1, 2 or 5 times a power of ten metres) that fits in
// `maxPixels` at `metresPerPixel`, with its length in pixels and its label.
export function scaleBar(metresPerPixel, maxPixels = SCALE_MAX_PX) {
  const most = metresPerPixel * maxPixels;
  let metres = 1;
  for (let power = 10 ** Math.floor(Math.log10(most)); power >= 1e-3; power /= 10) {
    const fits = [5, 2, 1].map((step) => step * power).find((length) => length <= most);
    if (fits) {
      metres = fits;
      break;
    }
  }
  const label = metres >= 1000 ? `${metres / 1000} km` : `${metres} m`;
  return { metres, pixels: metres / metresPerPixel, label };
}

// Where each marker's label goes: the first of a few places around the marker
// (right, left, above, below) whose box overlaps no label placed before it, no
// marker and not the edge; else the place with the least overlap. `markers` are
// [{x, y, text}]; the answer is [{x, y, anchor}] in the same order.
const PLACES = [
  { dx: MARKER_RADIUS + 3, dy: -MARKER_RADIUS, anchor: "start" },
  { dx: MARKER_RADIUS + 3, dy: MARKER_RADIUS + LABEL_FONT_PX - 2, anchor: "start" },
  { dx: -(MARKER_RADIUS + 3), dy: -MARKER_RADIUS, anchor: "end" },
  { dx: -(MARKER_RADIUS + 3), dy: MARKER_RADIUS + LABEL_FONT_PX - 2, anchor: "end" },
  { dx: 0, dy: -(MARKER_RADIUS + 4), anchor: "middle" },
  { dx: 0, dy: MARKER_RADIUS + LABEL_FONT_PX + 2, anchor: "middle" },
];

export function labelBox(x, y, anchor, text) {
  const width = text.length * LABEL_CHAR_PX + 2;
  const left = anchor === "start" ? x : anchor === "end" ? x - width : x - width / 2;
  return { left, right: left + width, top: y - LABEL_FONT_PX + 2, bottom: y + 3 };
}

function overlap(a, b) {
  const width = Math.min(a.right, b.right) - Math.max(a.left, b.left);
  const height = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
  return width > 0 && height > 0 ? width * height : 0;
}

export function placeLabels(markers, width, height) {
  const markerBoxes = markers.map(({ x, y }) => ({
    left: x - MARKER_RADIUS,
    right: x + MARKER_RADIUS,
    top: y - MARKER_RADIUS,
    bottom: y + MARKER_RADIUS,
  }));
  const placed = [];
  return markers.map(({ x, y, text }) => {
    let best = null;
    for (const place of PLACES) {
      const at = { x: x + place.dx, y: y + place.dy, anchor: place.anchor };
      const box = labelBox(at.x, at.y, at.anchor, text);
      let cost = 0;
      for (const other of placed) cost += overlap(box, other);
      for (const other of markerBoxes) cost += overlap(box, other);
      if (box.left < 0 || box.right > width || box.top < 0 || box.bottom > height) cost += 1e6;
      if (!best || cost < best.cost) best = { at, box, cost };
      if (cost === 0) break;
    }
    placed.push(best.box);
    return best.at;
  });
}

export class PositionsView {
  constructor(document) {
    this.svg = document.getElementById("positions-map");
    this.trails = document.getElementById("positions-trails");
    this.markers = document.getElementById("positions-markers");
    this.empty = document.getElementById("positions-empty");
    this.boundsText = document.getElementById("positions-bounds");
    this.list = document.getElementById("positions-list");
    this.scale = document.getElementById("positions-scale");
    const box = this.svg ? this.svg.viewBox.baseVal : { width: 800, height: 480 };
    this.width = box.width;
    this.height = box.height;
    this.devices = new Map(); // device id -> {shipmentId, trail: [[lon, lat, ms]], seenAt}
    this.updates = 0;
    this.pending = false;
  }

  // Adds the positions of one event; the drawing follows on the next animation frame.
  add(positions, receivedAt = Date.now()) {
    for (const position of positions) {
      const deviceId = Number(position.device_id);
      const latitude = Number(position.latitude);
      const longitude = Number(position.longitude);
      const at = Date.parse(position.timestamp);
      if (!Number.isFinite(deviceId) || !Number.isFinite(latitude) || !Number.isFinite(longitude)) {
        continue;
      }
      let device = this.devices.get(deviceId);
      if (!device) {
        device = { shipmentId: null, trail: [], seenAt: receivedAt };
        this.devices.set(deviceId, device);
      }
      const last = device.trail[device.trail.length - 1];
      if (last && Number.isFinite(at) && at <= last[2]) continue; // older than what is drawn
      device.trail.push([longitude, latitude, Number.isFinite(at) ? at : receivedAt]);
      if (device.trail.length > TRAIL_POINTS) device.trail.splice(0, device.trail.length - TRAIL_POINTS);
      device.shipmentId = position.shipment_id ?? device.shipmentId;
      device.seenAt = receivedAt;
    }
    this.updates += 1;
    this.#schedule();
  }

  forgetSilent(now = Date.now()) {
    let forgot = false;
    for (const [deviceId, device] of this.devices) {
      if (now - device.seenAt > FORGET_AFTER_MS) {
        this.devices.delete(deviceId);
        forgot = true;
      }
    }
    if (forgot) this.#schedule();
  }

  #schedule() {
    if (this.pending || !this.svg) return;
    this.pending = true;
    window.requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  draw() {
    const everyPoint = [];
    for (const device of this.devices.values()) everyPoint.push(...device.trail);
    this.trails.replaceChildren();
    this.markers.replaceChildren();
    this.list.replaceChildren();
    this.svg.dataset.devices = String(this.devices.size);
    this.svg.dataset.updates = String(this.updates);
    this.empty.style.display = everyPoint.length ? "none" : "";
    if (this.scale) this.scale.replaceChildren();
    if (!everyPoint.length) {
      this.boundsText.textContent = "";
      return;
    }
    const bounds = fitBounds(everyPoint, this.width, this.height);
    this.#drawScale(bounds.metresPerPixel);
    this.boundsText.textContent =
      `Latitude ${bounds.south.toFixed(5)} to ${bounds.north.toFixed(5)}, ` +
      `longitude ${bounds.west.toFixed(5)} to ${bounds.east.toFixed(5)}`;
    const ordered = [...this.devices.entries()].sort((a, b) => a[0] - b[0]);
    const labels = [];
    for (const [deviceId, device] of ordered) {
      const colour = colourFor(deviceId);
      const projected = device.trail.map((point) => bounds.project(point));
      if (projected.length > 1) {
        this.trails.append(
          element("polyline", {
            class: "trail",
            stroke: colour,
            points: projected.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" "),
            "data-device-id": deviceId,
          }),
        );
      }
      const [x, y] = projected[projected.length - 1];
      const [longitude, latitude, at] = device.trail[device.trail.length - 1];
      const marker = element("circle", {
        class: "marker",
        cx: x.toFixed(1),
        cy: y.toFixed(1),
        r: 7,
        fill: colour,
        "data-device-id": deviceId,
        "data-latitude": latitude,
        "data-longitude": longitude,
      });
      const title = element("title", {});
      title.textContent = `Device ${deviceId}`;
      marker.append(title);
      this.markers.append(marker);
      labels.push({ x, y, text: String(deviceId) });

      const item = document.createElement("li");
      item.dataset.deviceId = String(deviceId);
      const shipment = device.shipmentId === null ? "no shipment" : `shipment ${device.shipmentId}`;
      item.textContent =
        `Device ${deviceId} · ${shipment} · ${latitude.toFixed(5)}, ${longitude.toFixed(5)} · ` +
        new Date(at).toLocaleTimeString([], { hour12: false });
      this.list.append(item);
    }
    // Labels after every marker, so that each is placed clear of all of them.
    placeLabels(labels, this.width, this.height).forEach((place, index) => {
      const label = element("text", {
        class: "marker-label",
        x: place.x.toFixed(1),
        y: place.y.toFixed(1),
        "text-anchor": place.anchor,
        "data-device-id": labels[index].text,
      });
      label.textContent = labels[index].text;
      this.markers.append(label);
    });
  }

  // A scale bar in the bottom left corner and a north arrow above it.
  #drawScale(metresPerPixel) {
    if (!this.scale) return;
    const bar = scaleBar(metresPerPixel);
    const left = 16;
    const base = this.height - 16;
    this.scale.dataset.metres = String(bar.metres);
    this.scale.dataset.pixels = bar.pixels.toFixed(1);
    this.scale.append(
      element("path", {
        class: "scale-bar",
        d: `M${left} ${base - 6} V${base} H${(left + bar.pixels).toFixed(1)} V${base - 6}`,
      }),
    );
    const text = element("text", { class: "scale-label", x: left, y: base - 10 });
    text.textContent = bar.label;
    const north = element("text", { class: "scale-label", x: left, y: base - 34 });
    north.textContent = "N ↑";
    this.scale.append(text, north);
  }
}
