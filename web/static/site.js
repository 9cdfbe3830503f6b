/* smartby's website: a little script on top of pages that work without it.
 *
 * - the air-quality map (Leaflet), its markers made from the station list, one per
 *   station, each labelled with its level in words;
 * - the station list refreshed every minute, without a reload;
 * - charts (uPlot) drawn from the JSON spec beside each table, which says the same;
 * - the download builder's answer, following every change of the form.
 *
 * The server renders every word; this file holds none, so both languages stay in
 * the gettext catalogues.  Nothing here talks to any other site but the tile server.
 */
(function () {
  "use strict";

  var html = document.documentElement;
  var lang = html.lang || "nb";
  var intlLang = lang === "en" ? "en-GB" : "nb-NO"; // the server's Babel locales
  var zone = html.getAttribute("data-tz") || "Europe/Oslo";
  var smartby = (window.smartby = { charts: {}, markers: {} });

  // ------------------------------------------------------------------ the map

  var LEVEL_COLOURS = ["#b1b4b6", "#50f0e6", "#50ccaa", "#f0e641", "#ff5050", "#960032", "#7d2181"];

  function stationItems() {
    return Array.prototype.slice.call(document.querySelectorAll("#stations-list .station"));
  }

  function markerIcon(item) {
    var span = document.createElement("span");
    span.className = "aqi-marker level-" + item.getAttribute("data-level");
    span.textContent = item.getAttribute("data-label");
    return window.L.divIcon({ className: "aqi-icon", html: span, iconSize: null });
  }

  function popupFor(item) {
    var box = document.createElement("div");
    var link = document.createElement("a");
    link.href = item.getAttribute("data-href");
    link.textContent = item.getAttribute("data-name");
    var strong = document.createElement("strong");
    strong.appendChild(link);
    var level = document.createElement("p");
    level.textContent = item.getAttribute("data-label");
    box.appendChild(strong);
    box.appendChild(level);
    return box;
  }

  function placeMarkers(map) {
    Object.keys(smartby.markers).forEach(function (site) {
      map.removeLayer(smartby.markers[site]);
    });
    smartby.markers = {};
    stationItems().forEach(function (item) {
      var site = item.getAttribute("data-site");
      var at = [parseFloat(item.getAttribute("data-lat")), parseFloat(item.getAttribute("data-lon"))];
      var name = item.getAttribute("data-name") + ": " + item.getAttribute("data-label");
      var marker = window.L.marker(at, { icon: markerIcon(item), keyboard: true, title: name });
      marker.bindPopup(popupFor(item));
      marker.addTo(map);
      var element = marker.getElement();
      if (element) {
        element.setAttribute("aria-label", name);
        element.setAttribute("data-site", site);
      }
      smartby.markers[site] = marker;
    });
  }

  /* The stations within 5 km of the middle one: the first view shows the town, not
   * the whole municipality (zoom out for the rest; every station is in the list). */
  function nearMiddle(points) {
    if (points.length < 3) return points;
    var lats = points.map(function (p) { return p[0]; }).sort();
    var lons = points.map(function (p) { return p[1]; }).sort();
    var middle = [lats[lats.length >> 1], lons[lons.length >> 1]];
    var near = points.filter(function (p) {
      var dy = (p[0] - middle[0]) * 111;
      var dx = (p[1] - middle[1]) * 111 * Math.cos((middle[0] * Math.PI) / 180);
      return dx * dx + dy * dy <= 25;
    });
    return near.length ? near : points;
  }

  function startMap() {
    var element = document.getElementById("map");
    if (!element || !window.L) return;
    element.hidden = false;
    element.setAttribute("role", "region");
    element.setAttribute("aria-label", element.getAttribute("data-label"));
    var map = window.L.map(element, { zoomControl: false, attributionControl: true });
    window.L.control
      .zoom({ zoomInTitle: element.getAttribute("data-zoom-in"), zoomOutTitle: element.getAttribute("data-zoom-out") })
      .addTo(map);
    var tiles = element.getAttribute("data-tiles");
    if (tiles) {
      var layer = window.L.tileLayer(tiles, {
        attribution: element.getAttribute("data-attribution"),
        maxZoom: 18,
        crossOrigin: false,
      });
      var told = false;
      layer.on("tileerror", function () {
        if (told) return;
        told = true;
        var note = document.getElementById("map-note");
        note.textContent = element.getAttribute("data-no-tiles");
        note.hidden = false;
      });
      layer.addTo(map);
    }
    // the view first: Leaflet adds no marker to a map that has none yet
    var bounds = nearMiddle(
      stationItems().map(function (item) {
        return [parseFloat(item.getAttribute("data-lat")), parseFloat(item.getAttribute("data-lon"))];
      })
    );
    if (bounds.length) map.fitBounds(bounds, { padding: [40, 40], maxZoom: 14 });
    else map.setView([68.44, 17.43], 12);
    placeMarkers(map);
    smartby.map = map;
  }

  // ------------------------------------------------------------------ refresh

  function refreshStations() {
    var panel = document.querySelector(".stations-panel[data-refresh]");
    var target = document.getElementById("stations");
    if (!panel || !target) return Promise.resolve(false);
    var url = panel.getAttribute("data-refresh") + "?lang=" + encodeURIComponent(lang);
    return fetch(url, { headers: { Accept: "text/html" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error(response.status);
        return response.text();
      })
      .then(function (text) {
        target.innerHTML = text;
        if (smartby.map) placeMarkers(smartby.map);
        smartby.refreshed = (smartby.refreshed || 0) + 1;
        return true;
      })
      .catch(function () {
        return false; // the list on the page stays; the next minute tries again
      });
  }
  smartby.refreshStations = refreshStations;

  // ------------------------------------------------------------------ charts

  var numberFormat = new Intl.NumberFormat(intlLang, { maximumFractionDigits: 1 });
  var SPAN_DAYS = 2 * 86400;

  function timeFormat(spanSeconds, step) {
    if (step >= 86400) return new Intl.DateTimeFormat(intlLang, { timeZone: zone, day: "numeric", month: "short" });
    if (spanSeconds <= SPAN_DAYS) return new Intl.DateTimeFormat(intlLang, { timeZone: zone, hour: "2-digit", minute: "2-digit" });
    return new Intl.DateTimeFormat(intlLang, { timeZone: zone, day: "numeric", month: "short", hour: "2-digit" });
  }

  /* The API's points, with a null where a bucket is missing so the line breaks
   * there instead of bridging the gap. */
  function withGaps(spec) {
    var xs = [], ys = [], marks = [];
    for (var i = 0; i < spec.x.length; i++) {
      if (i > 0 && spec.kind === "line" && spec.x[i] - spec.x[i - 1] > spec.step * 1.5) {
        xs.push(spec.x[i - 1] + spec.step);
        ys.push(null);
        marks.push(null);
      }
      xs.push(spec.x[i]);
      ys.push(spec.y[i]);
      marks.push(spec.marks ? spec.marks[i] : null);
    }
    return spec.marks ? [xs, ys, marks] : [xs, ys];
  }

  function bandsPlugin(bands) {
    return {
      hooks: {
        drawClear: function (u) {
          var ctx = u.ctx;
          var top = u.scales.y.max;
          ctx.save();
          for (var i = 0; i < bands.length; i++) {
            var low = bands[i].from;
            var high = i + 1 < bands.length ? bands[i + 1].from : top;
            if (low >= top) break;
            var y0 = u.valToPos(Math.min(high, top), "y", true);
            var y1 = u.valToPos(low, "y", true);
            ctx.globalAlpha = 0.28;
            ctx.fillStyle = LEVEL_COLOURS[bands[i].level];
            ctx.fillRect(u.bbox.left, y0, u.bbox.width, y1 - y0);
            if (y1 - y0 > 14) {
              ctx.globalAlpha = 1;
              ctx.fillStyle = "#0b0c0c";
              ctx.font = 12 * devicePixelRatio + "px system-ui, sans-serif";
              ctx.textAlign = "right";
              ctx.fillText(bands[i].label, u.bbox.left + u.bbox.width - 6 * devicePixelRatio, y1 - 4 * devicePixelRatio);
            }
          }
          ctx.restore();
        },
      },
    };
  }

  function legend(figure, spec, hasMarks) {
    var list = document.createElement("ul");
    list.className = "chart-legend";
    var item = document.createElement("li");
    item.innerHTML = '<span class="key"></span>';
    item.appendChild(document.createTextNode(spec.label));
    list.appendChild(item);
    if (hasMarks) {
      var marked = document.createElement("li");
      marked.innerHTML = '<span class="key ring"></span>';
      marked.appendChild(document.createTextNode(spec.marksLabel));
      list.appendChild(marked);
    }
    return list;
  }

  function drawChart(figure) {
    if (!window.uPlot || figure.smartbyChart) return;
    var spec = JSON.parse(figure.querySelector(".chart-spec").textContent);
    var area = figure.querySelector(".chart-area");
    area.hidden = false;
    var data = withGaps(spec);
    var span = spec.x.length ? spec.x[spec.x.length - 1] - spec.x[0] : 0;
    var dates = timeFormat(span, spec.step);
    var hasMarks = !!spec.marks && spec.marks.some(function (v) { return v !== null; });
    var series = [
      {},
      {
        label: spec.label,
        stroke: "#0b3b60",
        width: 2,
        fill: spec.kind === "bars" ? "#1d70b8" : undefined,
        paths: spec.kind === "bars" ? window.uPlot.paths.bars({ size: [0.7, 60] }) : undefined,
        points: { show: false },
        spanGaps: false,
      },
    ];
    if (spec.marks) {
      series.push({
        label: spec.marksLabel,
        stroke: "#d4351c",
        width: 0,
        paths: function () { return null; },
        points: { show: true, size: 10, width: 2, stroke: "#d4351c", fill: "#ffffff" },
      });
    }
    var readout = document.createElement("p");
    readout.className = "chart-readout";
    readout.setAttribute("aria-hidden", "true");
    var options = {
      width: Math.max(280, area.clientWidth),
      height: 260,
      series: series,
      legend: { show: false },
      scales: {
        x: { time: true, range: spec.kind === "bars" ? function (u, min, max) { return [min - spec.step / 2, max + spec.step / 2]; } : undefined },
        y: {
          range: function (u, min, max) {
            var floor = spec.bands.length > 1 ? spec.bands[1].from * 1.1 : 0;
            return [0, Math.max((max || 0) * 1.1, floor, 1)];
          },
        },
      },
      axes: [
        {
          // daily data gets ticks on whole days only
          incrs: spec.step >= 86400 ? [86400, 2 * 86400, 7 * 86400, 14 * 86400] : undefined,
          values: function (u, ticks) { return ticks.map(function (t) { return dates.format(new Date(t * 1000)); }); },
        },
        { values: function (u, ticks) { return ticks.map(function (v) { return numberFormat.format(v); }); }, size: 56 },
      ],
      plugins: spec.bands.length ? [bandsPlugin(spec.bands)] : [],
      hooks: {
        setCursor: [
          function (u) {
            var i = u.cursor.idx;
            if (i == null || u.data[1][i] == null) { readout.textContent = ""; return; }
            readout.textContent = new Intl.DateTimeFormat(intlLang, { timeZone: zone, dateStyle: "medium", timeStyle: "short" }).format(new Date(u.data[0][i] * 1000)) +
              ": " + numberFormat.format(u.data[1][i]) + " " + spec.unit;
          },
        ],
      },
    };
    var chart = new window.uPlot(options, data, area);
    chart.root.setAttribute("role", "img");
    chart.root.setAttribute("aria-label", figure.querySelector("figcaption").textContent);
    area.parentNode.insertBefore(legend(figure, spec, hasMarks), area.nextSibling);
    area.parentNode.insertBefore(readout, area.nextSibling.nextSibling);
    figure.smartbyChart = chart;
    smartby.charts[spec.id] = chart;
    var table = figure.querySelector("details.chart-table");
    if (table) table.open = false; // the chart says it now; the table is one click away
    if (window.ResizeObserver) {
      new ResizeObserver(function () {
        var width = Math.max(280, area.clientWidth);
        if (width !== chart.width) chart.setSize({ width: width, height: 260 });
      }).observe(area);
    }
  }

  // ------------------------------------------------------------------ the download builder

  function startBuilder() {
    var form = document.getElementById("builder");
    var target = document.getElementById("request");
    if (!form || !target) return;
    var pending = null;
    function update() {
      var query = new URLSearchParams(new FormData(form)).toString();
      fetch(form.getAttribute("data-refresh") + "?" + query, { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.text() : Promise.reject(response.status); })
        .then(function (text) {
          target.innerHTML = text;
          history.replaceState(null, "", form.getAttribute("action") + "?" + query);
          smartby.built = (smartby.built || 0) + 1;
        })
        .catch(function () { /* the button still submits the form */ });
    }
    form.addEventListener("change", function () {
      clearTimeout(pending);
      pending = setTimeout(update, 150);
    });
    smartby.updateRequest = update;
  }

  function start() {
    startMap();
    var panel = document.querySelector(".stations-panel[data-refresh]");
    if (panel) smartby.timer = setInterval(refreshStations, 60000);
    Array.prototype.forEach.call(document.querySelectorAll("figure.chart"), drawChart);
    startBuilder();
    smartby.ready = true;
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
