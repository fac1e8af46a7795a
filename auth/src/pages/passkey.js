// AuthFlow passkeys: runs the WebAuthn ceremonies the pages offer, and nothing else.
// Served from memory as /auth/static/passkey.js (the pages' CSP allows scripts from this
// origin only, and no inline script). Every page works without it: the passkey buttons stay
// hidden unless this script runs in a browser with WebAuthn.
//
// A section marked data-passkey="authenticate" or "register" names its endpoints in
// data-start/data-finish; the server keeps the ceremony's state and answers {ceremony,
// publicKey}; binary fields travel as base64url both ways.
(function () {
  "use strict";
  if (!window.PublicKeyCredential || !navigator.credentials) {
    return;
  }

  function toBuffer(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) {
      s += "=";
    }
    var bin = atob(s);
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) {
      bytes[i] = bin.charCodeAt(i);
    }
    return bytes.buffer;
  }

  function toText(buf) {
    var bytes = new Uint8Array(buf);
    var s = "";
    for (var i = 0; i < bytes.length; i++) {
      s += String.fromCharCode(bytes[i]);
    }
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) {
          throw new Error(j.error || "HTTP " + r.status);
        }
        return j;
      });
    });
  }

  function creationOptions(pk) {
    pk.challenge = toBuffer(pk.challenge);
    pk.user.id = toBuffer(pk.user.id);
    (pk.excludeCredentials || []).forEach(function (c) { c.id = toBuffer(c.id); });
    return pk;
  }

  function requestOptions(pk) {
    pk.challenge = toBuffer(pk.challenge);
    (pk.allowCredentials || []).forEach(function (c) { c.id = toBuffer(c.id); });
    return pk;
  }

  function registration(cred) {
    return {
      id: cred.id,
      rawId: toText(cred.rawId),
      type: cred.type,
      response: {
        clientDataJSON: toText(cred.response.clientDataJSON),
        attestationObject: toText(cred.response.attestationObject)
      }
    };
  }

  function assertion(cred) {
    var r = cred.response;
    return {
      id: cred.id,
      rawId: toText(cred.rawId),
      type: cred.type,
      response: {
        clientDataJSON: toText(r.clientDataJSON),
        authenticatorData: toText(r.authenticatorData),
        signature: toText(r.signature),
        userHandle: r.userHandle ? toText(r.userHandle) : null
      }
    };
  }

  function failed(section, button) {
    return function () {
      var alert = section.querySelector("[data-passkey-alert]");
      alert.textContent = section.getAttribute("data-error");
      alert.hidden = false;
      button.disabled = false;
    };
  }

  function authenticate(section, button) {
    button.disabled = true;
    post(section.getAttribute("data-start"), {})
      .then(function (c) {
        return navigator.credentials
          .get({ publicKey: requestOptions(c.publicKey) })
          .then(function (cred) {
            return post(section.getAttribute("data-finish"), {
              ceremony: c.ceremony,
              credential: assertion(cred)
            });
          });
      })
      .then(function (done) {
        window.location.assign(done.next || section.getAttribute("data-next") || "/app/");
      })
      .catch(failed(section, button));
  }

  function register(section, button) {
    var name = section.querySelector("[data-passkey-name]");
    button.disabled = true;
    post(section.getAttribute("data-start"), {})
      .then(function (c) {
        return navigator.credentials
          .create({ publicKey: creationOptions(c.publicKey) })
          .then(function (cred) {
            return post(section.getAttribute("data-finish"), {
              ceremony: c.ceremony,
              name: name ? name.value : "",
              credential: registration(cred)
            });
          });
      })
      .then(function (done) {
        var codes = section.querySelector("[data-passkey-codes]");
        if (done.recovery_codes && codes) {
          var list = codes.querySelector("ul");
          done.recovery_codes.forEach(function (code) {
            var li = document.createElement("li");
            var el = document.createElement("code");
            el.textContent = code;
            li.appendChild(el);
            list.appendChild(li);
          });
          codes.hidden = false;
          button.hidden = true;
          codes.scrollIntoView({ block: "start" });
          return;
        }
        window.location.assign(section.getAttribute("data-done"));
      })
      .catch(failed(section, button));
  }

  document.querySelectorAll("[data-passkey]").forEach(function (section) {
    var button = section.querySelector("button[data-passkey-go]");
    var run = section.getAttribute("data-passkey") === "register" ? register : authenticate;
    button.addEventListener("click", function () { run(section, button); });
    section.hidden = false;
  });
})();
