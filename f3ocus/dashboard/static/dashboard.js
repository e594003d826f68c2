// f3ocus dashboard: draws the charts of the page as inline SVG from the JSON in #f3ocus-data.
// No library, no network: the page is one self-contained file. Every panel is drawn inside its own
// try/catch; a failing panel logs one console error and says so in place, the others still render.
// When done, the body's data-f3ocus-rendered attribute says ok (or error if a panel failed).
(function () {
  "use strict";
  const SVGNS = "http://www.w3.org/2000/svg";
  const DATA = JSON.parse(document.getElementById("f3ocus-data").textContent);
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                   "#bcbd22", "#17becf"];
  const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const RUNS = new Map(DATA.runs.map((r) => [r.id, r]));
  const GROUPS = Array.from(new Set(DATA.runs.map((r) => r.group))).sort();
  const groupColor = (group) => PALETTE[Math.max(0, GROUPS.indexOf(group)) % PALETTE.length];

  // ------------------------------------------------------------------------------------------- helpers
  function svgEl(tag, attrs, parent, text) {
    const node = document.createElementNS(SVGNS, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }
  function htmlEl(tag, attrs, parent, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }
  function tip(node, text) { svgEl("title", {}, node, text); return node; }
  function fmt(value) {
    if (value === null || value === undefined) return "–";
    const abs = Math.abs(value);
    if (abs !== 0 && (abs >= 1e5 || abs < 1e-3)) return value.toExponential(2);
    return Number.isInteger(value) ? String(value) : value.toPrecision(4).replace(/\.?0+$/, "");
  }
  function niceTicks(lo, hi, count) {
    if (!(hi > lo)) { const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1; lo -= pad; hi += pad; }
    const raw = (hi - lo) / Math.max(1, count);
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
    const start = Math.floor(lo / step) * step, end = Math.ceil(hi / step) * step;
    const ticks = [];
    for (let v = start; v <= end + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
    return ticks;
  }
  function viridis(t) {  // t in [0, 1]; 0 = dark purple, 1 = yellow
    t = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (VIRIDIS.length - 1);
    const i = Math.min(VIRIDIS.length - 2, Math.floor(t)), f = t - i;
    const c = VIRIDIS[i].map((a, k) => Math.round(a + f * (VIRIDIS[i + 1][k] - a)));
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  }
  function runLabel(run) {
    return `${run.name}${run.seed !== null && run.seed !== undefined ? " (seed " + run.seed + ")" : ""}`;
  }
  function select(parent, label, options, onChange) {
    const wrap = htmlEl("label", {class: "f3-control"}, parent, label + " ");
    const box = htmlEl("select", {}, wrap);
    options.forEach(([value, text]) => htmlEl("option", {value: String(value)}, box, text));
    box.addEventListener("change", () => onChange(box.value));
    return box;
  }

  // An x/y frame with nice ticks, grid and axis labels; returns scales and the plot group.
  function frame(container, opts) {
    const width = opts.width || 720, height = opts.height || 300;
    const m = {left: 64, right: 16, top: 12, bottom: 44};
    const xt = opts.xTicks || niceTicks(opts.x[0], opts.x[1], 8);
    const yt = niceTicks(opts.y[0], opts.y[1], 5);
    const [x0, x1] = [xt[0], xt[xt.length - 1]], [y0, y1] = [yt[0], yt[yt.length - 1]];
    const svg = svgEl("svg", {class: "f3-chart " + (opts.cls || ""), width, height,
                              viewBox: `0 0 ${width} ${height}`}, container);
    const x = (v) => m.left + (x1 === x0 ? 0.5 : (v - x0) / (x1 - x0)) * (width - m.left - m.right);
    const y = (v) => height - m.bottom - (y1 === y0 ? 0.5 : (v - y0) / (y1 - y0)) * (height - m.top - m.bottom);
    const axes = svgEl("g", {class: "f3-axes"}, svg);
    yt.forEach((v) => {
      svgEl("line", {x1: m.left, x2: width - m.right, y1: y(v), y2: y(v), class: "f3-grid"}, axes);
      svgEl("text", {x: m.left - 6, y: y(v) + 4, "text-anchor": "end", class: "f3-tick"}, axes, fmt(v));
    });
    xt.forEach((v) => {
      svgEl("line", {x1: x(v), x2: x(v), y1: height - m.bottom, y2: height - m.bottom + 4, class: "f3-axis"}, axes);
      svgEl("text", {x: x(v), y: height - m.bottom + 16, "text-anchor": "middle", class: "f3-tick"}, axes, fmt(v));
    });
    svgEl("line", {x1: m.left, x2: width - m.right, y1: height - m.bottom, y2: height - m.bottom, class: "f3-axis"}, axes);
    svgEl("line", {x1: m.left, x2: m.left, y1: m.top, y2: height - m.bottom, class: "f3-axis"}, axes);
    svgEl("text", {x: (m.left + width - m.right) / 2, y: height - 6, "text-anchor": "middle", class: "f3-label"},
          axes, opts.xLabel);
    svgEl("text", {x: 14, y: (m.top + height - m.bottom) / 2, "text-anchor": "middle", class: "f3-label",
                   transform: `rotate(-90 14 ${(m.top + height - m.bottom) / 2})`}, axes, opts.yLabel);
    return {svg, x, y, plot: svgEl("g", {class: "f3-plot"}, svg)};
  }

  // Legend by group under a chart; clicking an entry hides/shows that group's lines.
  function legend(container, svg, groups) {
    const box = htmlEl("div", {class: "f3-legend"}, container);
    groups.forEach((group) => {
      const item = htmlEl("span", {class: "f3-legend-item", title: "click: hide / show"}, box);
      htmlEl("span", {class: "f3-swatch", style: `background:${groupColor(group)}`}, item);
      htmlEl("span", {}, item, group);
      item.addEventListener("click", () => {
        item.classList.toggle("f3-off");
        svg.querySelectorAll(`[data-group="${CSS.escape(group)}"]`)
          .forEach((node) => node.classList.toggle("f3-hidden"));
      });
    });
  }

  // One line per run: series = [{run, points: [[step, value], ...]}].
  function lineChart(container, series, opts) {
    const points = series.flatMap((s) => s.points.filter((p) => p[1] !== null));
    if (!points.length) { htmlEl("p", {class: "f3-note"}, container, "no data"); return; }
    const xs = points.map((p) => p[0]), ys = points.map((p) => p[1] * (opts.scale || 1));
    const lo = Math.min(...xs), hi = Math.max(...xs);
    const xTicks = hi - lo <= 12 ? Array.from({length: hi - lo + 1}, (_, i) => lo + i) : undefined;
    const f = frame(container, {x: [lo, hi], xTicks, y: [opts.fromZero ? 0 : Math.min(...ys), Math.max(...ys)],
                                xLabel: opts.xLabel, yLabel: opts.yLabel, cls: opts.cls});
    series.forEach((s) => {
      const run = RUNS.get(s.run), color = groupColor(run.group);
      const pts = s.points.filter((p) => p[1] !== null).map((p) => [p[0], p[1] * (opts.scale || 1)]);
      const g = svgEl("g", {"data-group": run.group, "data-run": run.id}, f.plot);
      const d = pts.map((p, i) => `${i ? "L" : "M"}${f.x(p[0]).toFixed(1)},${f.y(p[1]).toFixed(1)}`).join("");
      tip(svgEl("path", {d, class: "f3-line", stroke: color}, g), `${runLabel(run)} · ${run.group}`);
      pts.forEach((p) => tip(svgEl("circle", {cx: f.x(p[0]), cy: f.y(p[1]), r: 3, class: "f3-dot", fill: color}, g),
                             `${runLabel(run)}: round ${p[0]}, ${opts.valueName} ${fmt(p[1])}`));
    });
    legend(container, f.svg, Array.from(new Set(series.map((s) => RUNS.get(s.run).group))).sort());
  }

  function star(cx, cy, outer) {
    const pts = [];
    for (let i = 0; i < 10; i++) {
      const r = i % 2 ? outer * 0.45 : outer, a = Math.PI / 2 + i * Math.PI / 5;
      pts.push(`${(cx + r * Math.cos(a)).toFixed(1)},${(cy - r * Math.sin(a)).toFixed(1)}`);
    }
    return "M" + pts.join("L") + "Z";
  }

  // ------------------------------------------------------------------------------------------- panels
  function renderAccuracy(container) {
    const series = DATA.runs.filter((r) => r.acc.length).map((r) => ({run: r.id, points: r.acc}));
    lineChart(container, series, {xLabel: "round (0 = before training)", yLabel: "eval/score (mean over clients)",
                                  valueName: "acc", cls: "f3-acc"});
  }

  function renderComm(container) {
    const series = DATA.runs.filter((r) => r.bytes_up.length).map((r) => ({run: r.id, points: r.bytes_up}));
    lineChart(container, series, {xLabel: "round", yLabel: "upload per round (MB)", valueName: "MB up",
                                  scale: 1e-6, fromZero: true, cls: "f3-comm"});
  }

  function renderFronts(container) {
    const controls = htmlEl("div", {class: "f3-controls"}, container);
    const area = htmlEl("div", {}, container);
    let entry = DATA.fronts[0], round = entry.rounds[entry.rounds.length - 1].round;
    const roundBox = () => {
      const box = controls.querySelector(".f3-round");
      if (box) box.parentNode.remove();
      const options = entry.rounds.map((r) => [r.round, `round ${r.round}`]).concat([["all", "all rounds"]]);
      const made = select(controls, "round", options, (value) => { round = value; draw(); });
      made.classList.add("f3-round");
      made.value = String(round);
    };
    const draw = () => {
      area.textContent = "";
      const shown = round === "all" ? entry.rounds : entry.rounds.filter((r) => String(r.round) === String(round));
      const all = shown.flatMap((r) => r.front);
      const padded = (values) => {  // 5 % margin so the points at the ends (and the star) are not cut
        const lo = Math.min(...values), hi = Math.max(...values), pad = (hi - lo) * 0.05 || Math.abs(hi) * 0.05 || 0.05;
        return [lo - pad, hi + pad];
      };
      const f = frame(area, {x: padded(all.map((p) => p[0])), y: padded(all.map((p) => p[1])),
                             xLabel: "importance Σ m·S (maximised)", yLabel: "histogram variance (minimised)",
                             width: 560, height: 360, cls: "f3-front"});
      shown.forEach((r, k) => {
        const color = shown.length > 1 ? viridis(k / Math.max(1, shown.length - 1)) : "#1f77b4";
        const g = svgEl("g", {"data-round": r.round}, f.plot);
        const order = r.front.map((p, i) => i).sort((a, b) => r.front[a][0] - r.front[b][0]);
        svgEl("path", {class: "f3-front-line", stroke: color,
                       d: order.map((i, j) => `${j ? "L" : "M"}${f.x(r.front[i][0]).toFixed(1)},${f.y(r.front[i][1]).toFixed(1)}`).join("")}, g);
        r.front.forEach((p, i) => tip(svgEl("circle", {cx: f.x(p[0]), cy: f.y(p[1]), r: 4, class: "f3-point", fill: color}, g),
                                      `round ${r.round}, point ${i}: importance ${fmt(p[0])}, variance ${fmt(p[1])}`));
        if (r.chosen !== null && r.chosen !== undefined && r.front[r.chosen]) {
          const p = r.front[r.chosen];
          tip(svgEl("path", {d: star(f.x(p[0]), f.y(p[1]), 10), class: "f3-chosen"}, g),
              `round ${r.round}: chosen point ${r.chosen} (importance ${fmt(p[0])}, variance ${fmt(p[1])})`);
        }
      });
      htmlEl("p", {class: "f3-note"}, area, `${runLabel(RUNS.get(entry.run))} · ${RUNS.get(entry.run).group}: ` +
             (round === "all" ? `${shown.length} rounds (dark = early, yellow = late)` :
              `round ${round}, ${shown[0].front.length} front points, ★ = the chosen selection`));
    };
    select(controls, "run", DATA.fronts.map((e) => [e.run, `${runLabel(RUNS.get(e.run))} · ${RUNS.get(e.run).group}`]),
           (value) => { entry = DATA.fronts.find((e) => e.run === value); round = entry.rounds[entry.rounds.length - 1].round;
                        roundBox(); draw(); });
    roundBox();
    draw();
  }

  function renderRanks(container) {
    const controls = htmlEl("div", {class: "f3-controls"}, container);
    const area = htmlEl("div", {class: "f3-heatmaps"}, container);
    let entry = DATA.ranks[0], kind = "ranks";
    const draw = () => {
      area.textContent = "";
      const L = entry.units.length, R = entry.rounds.length, cell = Math.max(10, Math.min(24, Math.floor(300 / L)));
      entry.clients.forEach((client) => {
        const matrix = entry[kind][client] || entry.ranks[client];
        const trained = entry.trained[client];
        const box = htmlEl("div", {class: "f3-heatmap"}, area);
        htmlEl("div", {class: "f3-heatmap-title"}, box, client);
        const left = 36, top = 4, bottom = 60;
        const svg = svgEl("svg", {class: "f3-chart f3-ranks", width: left + L * cell + 4, height: top + R * cell + bottom}, box);
        matrix.forEach((row, i) => row.forEach((rank, j) => {
          tip(svgEl("rect", {x: left + j * cell, y: top + i * cell, width: cell - 1, height: cell - 1, class: "f3-cell",
                             fill: viridis(1 - (rank - 1) / Math.max(1, L - 1))}, svg),
              `${client}, round ${entry.rounds[i]}, ${entry.units[j]}: rank ${rank}` + (trained[i][j] ? " (trained)" : ""));
          if (trained[i][j]) svgEl("circle", {cx: left + j * cell + (cell - 1) / 2, cy: top + i * cell + (cell - 1) / 2,
                                              r: Math.max(2, cell / 6), class: "f3-trained"}, svg);
        }));
        entry.rounds.forEach((r, i) => svgEl("text", {x: left - 4, y: top + i * cell + cell / 2 + 3, "text-anchor": "end",
                                                      class: "f3-tick"}, svg, String(r)));
        entry.units.forEach((u, j) => {
          const xx = left + j * cell + cell / 2, yy = top + R * cell + 6;
          svgEl("text", {x: xx, y: yy, transform: `rotate(60 ${xx} ${yy})`, class: "f3-tick f3-small"}, svg, u);
        });
      });
      const more = entry.num_clients > entry.clients.length ? ` (first ${entry.clients.length} of ${entry.num_clients} clients)` : "";
      htmlEl("p", {class: "f3-note"}, area, `${runLabel(RUNS.get(entry.run))}${more}: rows = rounds, columns = units; ` +
             `colour = rank (yellow = 1, most important; purple = ${L}); dot = trained that round.`);
    };
    select(controls, "run", DATA.ranks.map((e) => [e.run, `${runLabel(RUNS.get(e.run))} · ${RUNS.get(e.run).group}`]),
           (value) => { entry = DATA.ranks.find((e) => e.run === value); draw(); });
    select(controls, "ranking", [["ranks", "client's own scores"], ["revised_ranks", "server's revised ranking"]],
           (value) => { kind = value; draw(); });
    draw();
  }

  function renderSweeps(container) {
    const controls = htmlEl("div", {class: "f3-controls"}, container);
    const area = htmlEl("div", {}, container);
    const draw = (sweep) => {
      area.textContent = "";
      const axes = sweep.axes, spacing = 130, left = 70, top = 48, height = 320, bottom = 24;
      const width = left + (axes.length - 1) * spacing + 90;
      const svg = svgEl("svg", {class: "f3-chart f3-parcoords", width, height: top + height + bottom}, area);
      const pos = (axis, value) => {  // 0 (bottom) .. 1 (top)
        if (axis.kind === "categorical") {
          const n = axis.categories.length, i = axis.categories.indexOf(String(value));
          return n === 1 ? 0.5 : i / (n - 1);
        }
        return axis.max === axis.min ? 0.5 : (value - axis.min) / (axis.max - axis.min);
      };
      const X = (k) => left + k * spacing, Y = (t) => top + (1 - t) * height;
      const accAxis = axes[axes.length - 1];
      const lines = svgEl("g", {class: "f3-pc-lines"}, svg);
      sweep.lines.forEach((line) => {
        const d = line.values.map((v, k) => `${k ? "L" : "M"}${X(k).toFixed(1)},${Y(pos(axes[k], v)).toFixed(1)}`).join("");
        tip(svgEl("path", {d, class: "f3-pc-line", stroke: viridis(pos(accAxis, line.acc))}, lines),
            `${line.name}: ` + axes.map((a, k) => `${a.name}=${a.kind === "numeric" ? fmt(line.values[k]) : line.values[k]}`).join(", "));
      });
      axes.forEach((axis, k) => {
        const g = svgEl("g", {class: "f3-pc-axis"}, svg);
        svgEl("line", {x1: X(k), x2: X(k), y1: Y(0), y2: Y(1), class: "f3-axis"}, g);
        svgEl("text", {x: X(k), y: top - (k % 2 ? 26 : 12), "text-anchor": "middle", class: "f3-label"}, g, axis.name);
        const ticks = axis.kind === "categorical" ? axis.categories.map((c) => [c, pos(axis, c)])
          : (axis.max === axis.min ? [[axis.min, 0.5]] : niceTicks(axis.min, axis.max, 4)
              .filter((v) => v >= axis.min - 1e-12 && v <= axis.max + 1e-12).map((v) => [fmt(v), pos(axis, v)]));
        ticks.forEach(([text, t]) => {
          svgEl("line", {x1: X(k) - 3, x2: X(k) + 3, y1: Y(t), y2: Y(t), class: "f3-axis"}, g);
          svgEl("text", {x: X(k) + 6, y: Y(t) + 4, class: "f3-tick f3-pc-tick"}, g, String(text));
        });
      });
      htmlEl("p", {class: "f3-note"}, area, `sweep ${sweep.name}: ${sweep.lines.length} of ${sweep.num_children} child runs` +
             (sweep.unscored ? ` (${sweep.unscored} without a score left out)` : "") +
             "; one line per trial, coloured by final eval/score (yellow = best).");
    };
    select(controls, "sweep", DATA.sweeps.map((s) => [s.parent, `${s.name} (${s.num_children} trials)`]),
           (value) => draw(DATA.sweeps.find((s) => s.parent === value)));
    draw(DATA.sweeps[0]);
  }

  // ---------------------------------------------------------------------------------------------- main
  const PANELS = {acc: renderAccuracy, comm: renderComm, fronts: renderFronts, ranks: renderRanks, sweep: renderSweeps};
  let failed = 0;
  document.querySelectorAll("[data-chart]").forEach((container) => {
    const name = container.getAttribute("data-chart");
    try {
      PANELS[name](container);
      container.setAttribute("data-rendered", "ok");
    } catch (error) {
      failed += 1;
      container.setAttribute("data-rendered", "error");
      htmlEl("p", {class: "f3-error"}, container, `this panel failed to render: ${error}`);
      console.error(`f3ocus dashboard: panel ${name}: ${error && error.stack ? error.stack : error}`);
    }
  });
  document.body.setAttribute("data-f3ocus-rendered", failed ? "error" : "ok");
})();
