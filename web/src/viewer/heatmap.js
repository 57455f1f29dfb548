// An evidence image (Grad-CAM heatmap of a 2-D study) laid over a stack viewport's image: a plain
// <img> in the overlay, mapped onto the image's corners with a CSS matrix that follows zoom, pan,
// flips and rotation (recomputed on every render).

export class HeatmapOverlay {
  constructor(pane) {
    this.img = document.createElement("img");
    this.img.className = "mv-heatmap";
    this.img.alt = "evidence heatmap";
    this.img.dataset.testid = "viewer-heatmap";
    this.img.hidden = true;
    this.img.decoding = "async";
    this.opacity = 0.6;
    const svg = pane.querySelector(".mv-canvas svg");
    if (svg?.parentNode) svg.parentNode.insertBefore(this.img, svg);
    else pane.appendChild(this.img);
    this.url = null;
  }

  async show(url, opacity) {
    if (opacity !== undefined) this.opacity = opacity;
    this.url = url;
    if (!url) {
      this.img.hidden = true;
      this.img.removeAttribute("src");
      return;
    }
    this.img.src = url;
    try {
      await this.img.decode();
    } catch {
      this.img.hidden = true;
      throw new Error(`the heatmap ${url} could not be loaded`);
    }
    this.img.hidden = false;
    this.img.style.opacity = String(this.opacity);
  }

  setOpacity(x) {
    this.opacity = x;
    this.img.style.opacity = String(x);
  }

  /** Map the picture onto the image shown by `viewport` (a StackViewport). */
  update(viewport) {
    if (!this.url || this.img.hidden) return;
    const data = viewport.getImageData?.();
    if (!data || !data.imageData) return;
    const [w, h] = data.dimensions;
    const toCanvas = (i, j) => viewport.worldToCanvas(data.imageData.indexToWorld([i, j, 0]));
    const o = toCanvas(-0.5, -0.5);
    const x = toCanvas(w - 0.5, -0.5);
    const y = toCanvas(-0.5, h - 0.5);
    const nw = this.img.naturalWidth || w;
    const nh = this.img.naturalHeight || h;
    const a = (x[0] - o[0]) / nw;
    const b = (x[1] - o[1]) / nw;
    const c = (y[0] - o[0]) / nh;
    const d = (y[1] - o[1]) / nh;
    this.img.style.transform = `matrix(${a}, ${b}, ${c}, ${d}, ${o[0]}, ${o[1]})`;
  }

  destroy() {
    this.img.remove();
  }
}
