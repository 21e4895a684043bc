// Live job pages: server-sent events append the log, swap the loss chart and the state; the page reloads
// when the job ends so the final results show. Without JavaScript the page still works (refresh by hand).
(function () {
  "use strict";
  var log = document.getElementById("job-log");
  if (!log || !log.dataset.events || !window.EventSource) { return; }
  var source = new EventSource(log.dataset.events);
  source.addEventListener("update", function (event) {
    var data = JSON.parse(event.data);
    if (data.log) {
      var atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.appendChild(document.createTextNode(data.log));
      if (atEnd) { log.scrollTop = log.scrollHeight; }
    }
    if (data.chart) { document.getElementById("job-chart").innerHTML = data.chart; }
    document.getElementById("job-state").textContent = data.state;
  });
  source.onerror = function () {  // the console restarted or the session ended: reload shows which
    source.close();
    window.setTimeout(function () { window.location.reload(); }, 3000);
  };
  source.addEventListener("done", function () {
    source.close();
    window.location.reload();
  });
})();
