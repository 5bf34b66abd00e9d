// peekwidgets' widget manager for exported pages: renders the widget state that
// ipywidgets.embed writes into a page, with no kernel and no network.
//
// A trimmed @jupyter-widgets/html-manager: @jupyter-widgets/base and controls are bundled here;
// other widget libraries (bqplot, bqscales, anywidget) are their own AMD bundles, which the
// export inlines after this script, each wrapped as
//   (function (define) { ...bundle... })(peekEmbed.definer("bqplot"));
// The Output widget shows its outputs as HTML, images or text. Built by build.sh into
// ../static/embed-manager.js and .css (package.json pins the versions).

import * as base from "@jupyter-widgets/base";
import { ManagerBase } from "@jupyter-widgets/base-manager";
import * as controls from "@jupyter-widgets/controls";
import { MessageLoop } from "@lumino/messaging";
import { Widget } from "@lumino/widgets";

import "@lumino/widgets/style/index.css";
import "@jupyter-widgets/controls/css/widgets-base.css";
import "@jupyter-widgets/controls/css/labvariables.css";

const STATE = "application/vnd.jupyter.widget-state+json";
const VIEW = "application/vnd.jupyter.widget-view+json";

class OutputModel extends base.DOMWidgetModel {
  defaults() {
    return {
      ...super.defaults(),
      _model_name: "OutputModel", _view_name: "OutputView",
      _model_module: "@jupyter-widgets/output", _view_module: "@jupyter-widgets/output",
      _model_module_version: "1.0.0", _view_module_version: "1.0.0",
      msg_id: "", outputs: [],
    };
  }
}

class OutputView extends base.DOMWidgetView {
  render() {
    this.el.classList.add("jupyter-widgets-output-area");
    this.listenTo(this.model, "change:outputs", this.update);
    this.update();
  }

  update() {
    this.el.replaceChildren(...this.model.get("outputs").map(output => {
      const data = output.data || {};
      const div = document.createElement("div");
      if (data["text/html"] !== undefined) {
        div.innerHTML = [].concat(data["text/html"]).join("");
      } else if (data["image/png"] !== undefined) {
        const img = document.createElement("img");
        img.src = `data:image/png;base64,${data["image/png"]}`;
        div.append(img);
      } else {
        const pre = document.createElement("pre");
        pre.textContent = [].concat(output.text ?? data["text/plain"] ?? "").join("");
        div.append(pre);
      }
      return div;
    }));
  }
}

const builtin = {
  "@jupyter-widgets/base": base,
  "@jupyter-widgets/controls": controls,
  "@jupyter-widgets/output": { OutputModel, OutputView },
};
const defined = {};  // module name -> {deps, factory} of the inlined AMD bundles
const modules = {};  // module name -> exports, made on first use

/** The exports of module `name`: a bundled one, or an inlined bundle's (made once). */
function load(name) {
  if (builtin[name] !== undefined) return builtin[name];
  if (modules[name] === undefined && defined[name] !== undefined) {
    const { deps, factory } = defined[name];
    modules[name] = typeof factory === "function" ? factory(...deps.map(load)) : factory;
  }
  return modules[name];
}

/** The `define` an inlined AMD bundle calls: its exports become module `name`. */
function definer(name) {
  function define(id, deps, factory) {
    if (typeof id !== "string") [id, deps, factory] = [name, id, deps];
    if (!Array.isArray(deps)) [deps, factory] = [[], deps];
    defined[id] = { deps, factory };
  }
  define.amd = {};
  return define;
}

class EmbedManager extends ManagerBase {
  constructor() {
    super();
    this.views = new Set();
    window.addEventListener("resize", () => {
      for (const view of this.views) {
        MessageLoop.postMessage(view.luminoWidget, Widget.ResizeMessage.UnknownSize);
      }
    });
  }

  async loadClass(className, moduleName, moduleVersion) {
    const module = load(moduleName);
    if (module === undefined || module[className] === undefined) {
      throw new Error(`${className} of ${moduleName}@${moduleVersion} is not in this page`);
    }
    return module[className];
  }

  async display_view(view, el) {
    Widget.attach(view.luminoWidget, el);
    this.views.add(view);
    view.once("remove", () => this.views.delete(view));
  }

  _get_comm_info() {
    return Promise.resolve({});
  }

  _create_comm() {
    return Promise.resolve({ on_close() {}, on_msg() {}, close() {} });
  }
}

/** Render every widget view of the page from the page's widget state. */
async function render(root = document) {
  for (const tag of root.querySelectorAll(`script[type="${STATE}"]`)) {
    const manager = new EmbedManager();
    const models = await manager.set_state(JSON.parse(tag.textContent));
    await Promise.all([...root.querySelectorAll(`script[type="${VIEW}"]`)].map(async viewTag => {
      const { model_id } = JSON.parse(viewTag.textContent);
      const model = models.find(m => m.model_id === model_id);
      if (model === undefined) return;
      const div = document.createElement("div");
      div.className = "widget-subarea";
      viewTag.before(div);
      await manager.display_view(await manager.create_view(model), div);
    }));
  }
}

window.peekEmbed = { definer, render };
