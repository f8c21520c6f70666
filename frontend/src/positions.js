// Live courier positions drawn in an SVG: no map tiles, just the points, their
// recent trails, and bounds that fit whatever is on screen.

const SVG = "http://www.w3.org/2000/svg";
const TRAIL_POINTS = 60;
const FORGET_AFTER_MS = 10 * 60 * 1000; // a device silent this long leaves the view
const MIN_SPAN_DEGREES = 0.004; // about 400 m: a lone point is not zoomed in to nothing
const PADDING = 0.08;

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
    project([longitude, latitude]) {
      return [
        width / 2 + (longitude - centreLongitude) * shrink * scale,
        height / 2 - (latitude - centreLatitude) * scale,
      ];
    },
  };
}

export class PositionsView {
  constructor(document) {
    this.svg = document.getElementById("positions-map");
    this.trails = document.getElementById("positions-trails");
    this.markers = document.getElementById("positions-markers");
    this.empty = document.getElementById("positions-empty");
    this.boundsText = document.getElementById("positions-bounds");
    this.list = document.getElementById("positions-list");
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
    if (!everyPoint.length) {
      this.boundsText.textContent = "";
      return;
    }
    const bounds = fitBounds(everyPoint, this.width, this.height);
    this.boundsText.textContent =
      `Latitude ${bounds.south.toFixed(5)} to ${bounds.north.toFixed(5)}, ` +
      `longitude ${bounds.west.toFixed(5)} to ${bounds.east.toFixed(5)}`;
    const ordered = [...this.devices.entries()].sort((a, b) => a[0] - b[0]);
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
      const label = element("text", { class: "marker-label", x: (x + 10).toFixed(1), y: (y - 8).toFixed(1) });
      label.textContent = String(deviceId);
      this.markers.append(marker, label);

      const item = document.createElement("li");
      item.dataset.deviceId = String(deviceId);
      const shipment = device.shipmentId === null ? "no shipment" : `shipment ${device.shipmentId}`;
      item.textContent =
        `Device ${deviceId} · ${shipment} · ${latitude.toFixed(5)}, ${longitude.toFixed(5)} · ` +
        new Date(at).toLocaleTimeString([], { hour12: false });
      this.list.append(item);
    }
  }
}
