package lb

import "html/template"

// debugPage renders a debugSnapshot. The script renders the same markup
// from the JSON every 1.5 s; without JavaScript the page is the snapshot
// of its load.
var debugPage = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>protoc-gen-go-lb: live</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 .2em; }
h2 { font-size: 1.1em; margin: 1.4em 0 .4em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1em; margin: 1em 0 .3em; font-family: ui-monospace, monospace; }
table { border-collapse: collapse; margin: .3em 0 .8em; }
th, td { border: 1px solid #ddd; padding: 2px 8px; text-align: left; font-family: ui-monospace, monospace; font-size: 13px; }
th { background: #f3f3f3; font-family: system-ui, sans-serif; }
td.n { text-align: right; }
.meta { color: #555; }
.err { color: #b00020; }
.READY { color: #137333; font-weight: 600; }
.CONNECTING, .IDLE { color: #b06000; }
.TRANSIENT_FAILURE, .SHUTDOWN { color: #b00020; }
</style>
</head>
<body>
<h1>protoc-gen-go-lb: live</h1>
<p class="meta">as of <span id="time">{{.Time.Format "15:04:05.000"}}</span><noscript> (reload for a newer view)</noscript></p>

<h2>Watches</h2>
<section id="watches">{{range .Watches}}
<h3>{{.Target}}</h3>
<p class="meta">scheme {{.Scheme}} · failure policy {{.Policy}} · {{.Subscribers}} subscriber(s) · confirmed {{.Confirmed}}{{if .LastError}} · <span class="err">last error: {{.LastError}}{{if .FailingFor}} (for {{.FailingFor}}){{end}}</span>{{end}}</p>
<table class="watch-instances"><tr><th>instance</th><th>address</th><th>weight</th><th>zone</th><th>version</th><th>metadata</th></tr>{{range .Instances}}
<tr class="instance"><td>{{.ID}}</td><td>{{.Address}}</td><td class="n">{{if .Weight}}{{.Weight}}{{end}}</td><td>{{.Zone}}</td><td>{{.Version}}</td><td>{{range $k, $v := .Metadata}}{{$k}}={{$v}} {{end}}</td></tr>{{end}}
</table>{{else}}
<p class="meta">no watch running</p>{{end}}
</section>

<h2>Balanced clients</h2>
<section id="clients">{{range .Clients}}
<h3>{{.Target}}</h3>
<p class="meta">policy {{.Policy}} {{.Config}} · channel <span class="{{.State}}">{{.State}}</span> · calls {{.Calls.Started}} started, {{.Calls.Succeeded}} succeeded, {{.Calls.Failed}} failed, {{.Calls.InFlight}} in flight</p>
<table class="client-instances"><tr><th>address</th><th>state</th><th>started</th><th>succeeded</th><th>failed</th><th>in flight</th><th>policy</th></tr>{{range .Instances}}
<tr class="subchannel" data-address="{{.Address}}"><td>{{.Address}}</td><td class="{{.State}}">{{.State}}</td><td class="n">{{.Calls.Started}}</td><td class="n">{{.Calls.Succeeded}}</td><td class="n">{{.Calls.Failed}}</td><td class="n">{{.Calls.InFlight}}</td><td class="policy">{{.Policy}}</td></tr>{{end}}
</table>{{else}}
<p class="meta">no balanced client open</p>{{end}}
</section>

<h2>Server registrations</h2>
<section id="registrations">{{if .Registrations}}
<table><tr><th>service</th><th>backend</th><th>instance</th><th>address</th><th>status</th><th>registrations</th><th>last shutdown</th></tr>{{range .Registrations}}
<tr class="registration"><td>{{.Service}}</td><td>{{.Backend}}</td><td>{{.InstanceID}}</td><td>{{.Address}}</td><td>{{.Status}}</td><td class="n">{{.Registrations}}</td><td>{{with .Shutdown}}{{.Watchers}} watcher(s) told in {{.Propagation}}, drained in {{.Drain}}{{if .Forced}} (forced){{end}}{{end}}</td></tr>{{end}}
</table>{{else}}
<p class="meta">no server registered</p>{{end}}
</section>

<script>
(function () {
  function e(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
    });
  }
  function rows(list, f) { return list.map(f).join(""); }
  function watches(ws) {
    if (!ws.length) return '<p class="meta">no watch running</p>';
    return rows(ws, function (w) {
      return "<h3>" + e(w.target) + "</h3><p class=\"meta\">scheme " + e(w.scheme) + " · failure policy " + e(w.failurePolicy) +
        " · " + w.subscribers + " subscriber(s) · confirmed " + e(w.confirmed) +
        (w.lastError ? ' · <span class="err">last error: ' + e(w.lastError) + (w.failingFor ? " (for " + e(w.failingFor) + ")" : "") + "</span>" : "") + "</p>" +
        '<table class="watch-instances"><tr><th>instance</th><th>address</th><th>weight</th><th>zone</th><th>version</th><th>metadata</th></tr>' +
        rows(w.instances, function (i) {
          var md = Object.keys(i.metadata || {}).sort().map(function (k) { return e(k) + "=" + e(i.metadata[k]) + " "; }).join("");
          return '<tr class="instance"><td>' + e(i.id) + "</td><td>" + e(i.address) + '</td><td class="n">' + (i.weight || "") +
            "</td><td>" + e(i.zone || "") + "</td><td>" + e(i.version || "") + "</td><td>" + md + "</td></tr>";
        }) + "</table>";
    });
  }
  function clients(cs) {
    if (!cs.length) return '<p class="meta">no balanced client open</p>';
    return rows(cs, function (c) {
      return "<h3>" + e(c.target) + "</h3><p class=\"meta\">policy " + e(c.policy) + " " + e(c.config) + ' · channel <span class="' + e(c.state) + '">' + e(c.state) +
        "</span> · calls " + c.calls.started + " started, " + c.calls.succeeded + " succeeded, " + c.calls.failed + " failed, " + c.calls.inFlight + " in flight</p>" +
        '<table class="client-instances"><tr><th>address</th><th>state</th><th>started</th><th>succeeded</th><th>failed</th><th>in flight</th><th>policy</th></tr>' +
        rows(c.instances, function (i) {
          return '<tr class="subchannel" data-address="' + e(i.address) + '"><td>' + e(i.address) + '</td><td class="' + e(i.state) + '">' + e(i.state) +
            '</td><td class="n">' + i.calls.started + '</td><td class="n">' + i.calls.succeeded + '</td><td class="n">' + i.calls.failed +
            '</td><td class="n">' + i.calls.inFlight + '</td><td class="policy">' + e(i.policy || "") + "</td></tr>";
        }) + "</table>";
    });
  }
  function registrations(rs) {
    if (!rs.length) return '<p class="meta">no server registered</p>';
    return "<table><tr><th>service</th><th>backend</th><th>instance</th><th>address</th><th>status</th><th>registrations</th><th>last shutdown</th></tr>" +
      rows(rs, function (r) {
        var s = r.shutdown ? r.shutdown.watchers + " watcher(s) told in " + e(r.shutdown.propagation) + ", drained in " + e(r.shutdown.drain) + (r.shutdown.forced ? " (forced)" : "") : "";
        return '<tr class="registration"><td>' + e(r.service) + "</td><td>" + e(r.backend) + "</td><td>" + e(r.instanceId) + "</td><td>" + e(r.address) +
          "</td><td>" + e(r.status) + '</td><td class="n">' + r.registrations + "</td><td>" + s + "</td></tr>";
      }) + "</table>";
  }
  function pad(n, w) { return String(n).padStart(w, "0"); }
  function refresh() {
    fetch("?format=json", {cache: "no-store"}).then(function (r) { return r.json(); }).then(function (s) {
      var t = new Date(s.time);
      document.getElementById("time").textContent = pad(t.getHours(), 2) + ":" + pad(t.getMinutes(), 2) + ":" + pad(t.getSeconds(), 2) + "." + pad(t.getMilliseconds(), 3);
      document.getElementById("watches").innerHTML = watches(s.watches);
      document.getElementById("clients").innerHTML = clients(s.clients);
      document.getElementById("registrations").innerHTML = registrations(s.registrations);
    }).catch(function () {}).then(function () { setTimeout(refresh, 1500); });
  }
  setTimeout(refresh, 1500);
})();
</script>
</body>
</html>
`))
