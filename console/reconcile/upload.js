/* The statement upload with live progress. Without this script (or without XMLHttpRequest) the form posts as usual
   and the browser shows the result page; with it, the same request goes through XMLHttpRequest so that the page can
   say how much of the file has gone, then that the server is reading it, and finally shows the page the server
   answered (the result, or the error that says why nothing was stored). Its texts come from the form's data-*
   attributes, which the server fills from the console's catalog in the page's language. */
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  var bar = document.getElementById("upload-progress");
  var status = document.getElementById("upload-status");
  if (!form || !bar || !status || !window.XMLHttpRequest || !window.FormData || !window.DOMParser) {
    return;
  }
  var button = form.querySelector("button[type=submit]");
  var file = document.getElementById("file");
  var limit = parseInt(form.getAttribute("data-max-bytes"), 10);

  function say(text) {
    status.textContent = text;
  }

  function progress(percent) {
    bar.value = percent;
    say(form.getAttribute("data-uploading").replace("{pct}", String(percent)));
  }

  function fail(text) {
    bar.hidden = true;
    button.disabled = false;
    say(text);
  }

  function show(html, url) {
    // Only the answer's <main> is taken: its head and inline styles carry another response's nonce, which this
    // page's policy refuses. This page's own styles (the same ones) stay.
    var start = html.indexOf("<main>"), end = html.indexOf("</main>");
    if (start < 0 || end < start) {
      window.location.assign(url);
      return;
    }
    // Styles and scripts are cut before parsing: even in a parsed document the policy refuses (and reports) them.
    var part = html.slice(start, end + 7).replace(/<(style|script)\b[\s\S]*?<\/\1>/gi, "");
    var doc = new DOMParser().parseFromString(part, "text/html");
    var fresh = doc.querySelector("main");
    var main = document.querySelector("main");
    if (!fresh || !main) {
      window.location.assign(url);
      return;
    }
    var styles = Array.prototype.slice.call(main.querySelectorAll("style"));
    main.replaceChildren.apply(main, Array.prototype.slice.call(document.importNode(fresh, true).childNodes));
    styles.forEach(function (node) {
      main.insertBefore(node, main.firstChild);
    });
    var heading = main.querySelector("h1");
    if (heading) {
      document.title = heading.textContent + " · Lephi";
      // A screen reader user hears the result where the page moved them, as after a normal form post.
      heading.setAttribute("tabindex", "-1");
      heading.focus();
    }
  }

  form.addEventListener("submit", function (event) {
    if (!file.files || file.files.length !== 1) {
      return; // the browser's own check (required) or the server's page says what is missing
    }
    event.preventDefault();
    if (limit && file.files[0].size > limit) {
      fail(form.getAttribute("data-too-big"));
      file.focus();
      return;
    }
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("Accept", "text/html");
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable && e.total > 0) {
        progress(Math.min(100, Math.floor((e.loaded * 100) / e.total)));
      }
    });
    xhr.upload.addEventListener("load", function () {
      progress(100);
      say(form.getAttribute("data-reading"));
    });
    xhr.addEventListener("load", function () {
      var answered = xhr.responseURL || form.action;
      if (answered.split("?")[0] !== form.action.split("?")[0]) {
        // Redirected (the session ended: the sign-in page): go there as the plain form would have.
        window.location.assign(answered);
        return;
      }
      show(xhr.responseText, form.action);
    });
    xhr.addEventListener("error", function () {
      fail(form.getAttribute("data-failed"));
    });
    xhr.addEventListener("abort", function () {
      fail(form.getAttribute("data-failed"));
    });
    button.disabled = true;
    bar.hidden = false;
    progress(0);
    xhr.send(new FormData(form));
  });
})();
