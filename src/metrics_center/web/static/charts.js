// Draws every <div class="mc-chart" data-chart='{…}'> with uPlot (vendored, no network):
// published history as lines, the value awaiting approval as a large point, the anomaly band shaded.
(function () {
  "use strict";
  var COLORS = ["#017cee", "#7c3aed", "#0f9d58", "#f4511e", "#8d6e63", "#00838f"];
  var NEW_COLOR = "#d81b60";

  function fmt(v) {
    if (v == null) return "—";
    return Math.abs(v) < 1 ? v.toPrecision(4) : v.toLocaleString(undefined, { maximumFractionDigits: 2 });
  }

  function bandPlugin(band) {
    return {
      hooks: {
        drawClear: [function (u) {
          if (!band || band.low == null || band.high == null) return;
          var ctx = u.ctx, top = u.valToPos(band.high, "y", true), bottom = u.valToPos(band.low, "y", true);
          ctx.save();
          ctx.fillStyle = "rgba(15, 157, 88, 0.12)";
          ctx.fillRect(u.bbox.left, top, u.bbox.width, bottom - top);
          if (band.expected != null) {
            var y = u.valToPos(band.expected, "y", true);
            ctx.strokeStyle = "rgba(15, 157, 88, 0.8)";
            ctx.setLineDash([6, 4]);
            ctx.beginPath(); ctx.moveTo(u.bbox.left, y); ctx.lineTo(u.bbox.left + u.bbox.width, y); ctx.stroke();
          }
          ctx.restore();
        }]
      }
    };
  }

  function build(el) {
    var spec = JSON.parse(el.getAttribute("data-chart"));
    var data = [spec.x], series = [{}];
    spec.series.forEach(function (s, i) {
      data.push(s.values);
      series.push({ label: s.label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true,
                    value: function (u, v) { return fmt(v); } });
    });
    if (spec["new"]) {
      spec["new"].values.forEach(function (values, i) {
        data.push(values);
        series.push({ label: i === 0 ? spec["new"].label : spec["new"].label + " " + (i + 1), stroke: NEW_COLOR,
                      width: 0, points: { show: true, size: 11, fill: NEW_COLOR, stroke: "#fff" },
                      value: function (u, v) { return fmt(v); } });
      });
    }
    var lows = [], highs = [];
    if (spec.band && spec.band.low != null) { lows.push(spec.band.low); highs.push(spec.band.high); }
    var small = el.closest(".chart.small") !== null;
    var opts = {
      width: small ? Math.max(280, el.clientWidth || 300) : Math.min(760, Math.max(420, el.parentNode.parentNode.clientWidth - 20)),
      height: small ? 150 : 240,
      series: series,
      legend: { show: !small },
      scales: { x: { time: true }, y: { range: function (u, min, max) {
        var lo = Math.min.apply(null, [min].concat(lows)), hi = Math.max.apply(null, [max].concat(highs));
        var pad = (hi - lo) * 0.08 || Math.abs(hi) * 0.1 || 1;
        return [lo - pad, hi + pad];
      } } },
      axes: [{}, { size: 70, values: function (u, ticks) { return ticks.map(fmt); } }],
      plugins: [bandPlugin(spec.band)]
    };
    el.textContent = "";
    new uPlot(opts, data, el);
    el.setAttribute("data-drawn", "true");
  }

  function drawAll() {
    if (typeof uPlot === "undefined") return;
    document.querySelectorAll(".mc-chart").forEach(function (el) {
      try { build(el); } catch (e) { el.textContent = "chart unavailable: " + e.message; }
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", drawAll);
  else drawAll();
})();
