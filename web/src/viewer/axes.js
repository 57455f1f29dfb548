/**
 * Orientation marker of the 3-D pane: the patient's axes (DICOM LPS) as seen by the camera, drawn
 * as a small SVG in the lower-left corner (no second WebGL renderer, cheap under software WebGL).
 * Red: R-L, green: A-P, blue: I-S; the letter is the end pointing out of the marker.
 */
const AXES = [
  { v: [1, 0, 0], pos: "L", neg: "R", colour: "#ff6b6b" },
  { v: [0, 1, 0], pos: "P", neg: "A", colour: "#6be38a" },
  { v: [0, 0, 1], pos: "S", neg: "I", colour: "#6bb8ff" },
];
const SIZE = 84;
const R = 28;

const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];

export class AxesMarker {
  constructor(parent) {
    this.svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    this.svg.setAttribute("class", "mv-axes");
    this.svg.setAttribute("width", String(SIZE));
    this.svg.setAttribute("height", String(SIZE));
    this.svg.setAttribute("viewBox", `${-SIZE / 2} ${-SIZE / 2} ${SIZE} ${SIZE}`);
    this.svg.dataset.testid = "viewer-orientation-marker";
    parent.appendChild(this.svg);
    this.key = "";
  }

  /** cam: {viewUp, viewPlaneNormal} of the viewport. */
  update(cam) {
    if (!cam?.viewUp || !cam?.viewPlaneNormal) return;
    const up = cam.viewUp;
    const right = cross(up, cam.viewPlaneNormal);
    const key = [...up, ...cam.viewPlaneNormal].map((x) => x.toFixed(3)).join(",");
    if (key === this.key) return;
    this.key = key;
    // each axis end: screen x along right, y down; depth toward the viewer along the normal
    const ends = [];
    for (const a of AXES) {
      for (const [sign, letter] of [[1, a.pos], [-1, a.neg]]) {
        const v = a.v.map((x) => x * sign);
        ends.push({ x: dot(v, right) * R, y: -dot(v, up) * R, z: dot(v, cam.viewPlaneNormal), letter, colour: a.colour, pos: sign > 0 });
      }
    }
    ends.sort((p, q) => p.z - q.z); // far ends first
    let html = `<circle r="${R + 12}" fill="rgba(10,12,18,0.55)" stroke="rgba(255,255,255,0.15)"/>`;
    for (const e of ends) {
      const w = e.pos ? 3 : 1.5;
      const op = e.z < -0.2 ? 0.55 : 1;
      html += `<line x1="0" y1="0" x2="${e.x.toFixed(1)}" y2="${e.y.toFixed(1)}" stroke="${e.colour}" stroke-width="${w}" stroke-linecap="round" opacity="${op}"/>`;
      const lx = (e.x * (R + 8)) / R;
      const ly = (e.y * (R + 8)) / R;
      // ends that point at the viewer or away leave their letter off (it would sit on the centre)
      if (Math.hypot(e.x, e.y) > R * 0.35) {
        html += `<text x="${lx.toFixed(1)}" y="${ly.toFixed(1)}" fill="${e.colour}" opacity="${op}" font-size="${e.pos ? 11 : 9}" font-weight="${e.pos ? 700 : 400}" text-anchor="middle" dominant-baseline="central">${e.letter}</text>`;
      }
    }
    this.svg.innerHTML = html;
  }

  destroy() {
    this.svg.remove();
  }
}
