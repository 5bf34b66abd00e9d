// peekwidgets tile grid: every tile's pixels arrive in one binary buffer and are drawn here.
// Traits (see peekwidgets/widgets/tiles.py): pixels (bytes), kind ("gray" | "rgb" | "line" |
// "none"), tile_shape, captions, tooltips, outlined, size, frame, accent, tile_class;
// the front end sets clicked and hovered (tile slots, -1 for none).

function view(model) {
  const dv = model.get("pixels");
  if (!dv || !dv.byteLength) return null;
  return dv.buffer ? { buffer: dv.buffer, offset: dv.byteOffset, length: dv.byteLength }
                   : { buffer: dv, offset: 0, length: dv.byteLength };
}

function drawImage(canvas, bytes, h, w, channels) {
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(w, h);
  const out = image.data;
  for (let p = 0, q = 0; p < h * w; p++, q += channels) {
    out[4 * p] = bytes[q];
    out[4 * p + 1] = bytes[channels === 3 ? q + 1 : q];
    out[4 * p + 2] = bytes[channels === 3 ? q + 2 : q];
    out[4 * p + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
}

function drawLine(canvas, values, color) {
  const w = 96, h = 64, pad = 3;
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  let lo = Infinity, hi = -Infinity;
  for (const v of values) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const span = hi - lo || 1;
  ctx.strokeStyle = color;
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  values.forEach((v, i) => {
    const x = pad + (i / Math.max(values.length - 1, 1)) * (w - 2 * pad);
    const y = h - pad - ((v - lo) / span) * (h - 2 * pad);
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
}

function render({ model, el }) {
  el.classList.add("peek-tiles");
  let pending = false;

  function makeTile(slot) {
    const tile = document.createElement("div");
    const canvas = document.createElement("canvas");
    const button = document.createElement("button");
    button.type = "button";
    tile.append(canvas, button);
    tile.addEventListener("click", () => {
      if (!model.get("clickable")) return;
      model.set("clicked", slot);
      model.save_changes();
    });
    tile.addEventListener("mouseenter", () => {
      model.set("hovered", slot);
      model.save_changes();
    });
    tile.addEventListener("mouseleave", () => {
      model.set("hovered", -1);
      model.save_changes();
    });
    return tile;
  }

  function draw() {
    pending = false;
    const captions = model.get("captions");
    const tooltips = model.get("tooltips");
    const outlined = model.get("outlined");
    const kind = model.get("kind");
    const shape = model.get("tile_shape");
    const size = model.get("size");
    const frame = model.get("frame");
    const accent = model.get("accent");
    const n = captions.length;
    while (el.children.length > n) el.lastChild.remove();
    while (el.children.length < n) el.appendChild(makeTile(el.children.length));
    const data = view(model);
    const per = shape.reduce((a, b) => a * b, 1) * (kind === "rgb" ? 3 : 1);  // per tile
    for (let i = 0; i < n; i++) {
      const tile = el.children[i];
      const [canvas, button] = tile.children;
      const clickable = model.get("clickable");
      tile.className = "peek-tile-box " + model.get("tile_class") + (outlined[i] ? " on" : "")
        + (clickable ? "" : " inert");
      tile.style.borderColor = outlined[i] ? accent : frame;
      tile.title = tooltips[i] || "";
      button.textContent = captions[i];
      button.tabIndex = clickable ? 0 : -1;  // a tile without an action is no tab stop
      button.setAttribute("aria-label", tooltips[i] || captions[i]);  // its name: the tooltip
      canvas.style.display = kind === "none" || !data ? "none" : "";
      if (kind === "gray" || kind === "rgb") {
        const channels = kind === "rgb" ? 3 : 1;
        const bytes = new Uint8Array(data.buffer, data.offset + i * per, per);
        drawImage(canvas, bytes, shape[0], shape[1], channels);
        canvas.style.width = `${size}px`;
        canvas.style.height = `${Math.round((size * shape[0]) / shape[1])}px`;
        button.style.minWidth = `${size}px`;  // wider for a long caption
      } else if (kind === "line") {
        const values = new Float32Array(data.buffer.slice(data.offset + 4 * i * per,
                                                          data.offset + 4 * (i + 1) * per));
        drawLine(canvas, values, model.get("ink"));
        canvas.style.width = `${size + 24}px`;
        canvas.style.height = `${size}px`;
        button.style.minWidth = `${size + 24}px`;
      }
    }
  }

  function schedule() {
    if (!pending) {
      pending = true;
      requestAnimationFrame(draw);
    }
  }

  const names = ["pixels", "kind", "tile_shape", "captions", "tooltips", "outlined", "size",
                 "frame", "accent", "tile_class", "ink"];
  for (const name of names) model.on(`change:${name}`, schedule);
  draw();
  return () => {
    for (const name of names) model.off(`change:${name}`, schedule);
  };
}

export default { render };
