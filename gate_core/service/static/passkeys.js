// Passkey ceremonies for the Gatehouse console (issue 19). Served from 'self' (the CSP allows no
// inline script). Registration: the server's options -> navigator.credentials.create -> the
// server verifies and audits the public key. Signed decision: the server derives the challenge
// from the decision (gate, binding hash, verdict, comment hash) -> navigator.credentials.get ->
// the assertion rides in the decide form, and the core verifies it before anything is recorded.
"use strict";

function b64urlToBytes(text) {
  const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

function bytesToB64url(buffer) {
  let text = "";
  for (const byte of new Uint8Array(buffer)) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function postJson(url, csrf, body) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  let data = {};
  try { data = JSON.parse(text); } catch (e) { data = { error: `the server answered ${response.status}` }; }
  if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
  return data;
}

async function register(form) {
  const status = document.getElementById("passkey-status");
  const csrf = form.dataset.csrf, base = form.dataset.base;
  status.textContent = "Waiting for your authenticator…";
  const options = await postJson(`${base}/passkeys/options`, csrf, {});
  options.challenge = b64urlToBytes(options.challenge);
  options.user.id = b64urlToBytes(options.user.id);
  for (const c of options.excludeCredentials || []) c.id = b64urlToBytes(c.id);
  const credential = await navigator.credentials.create({ publicKey: options });
  const r = credential.response;
  await postJson(`${base}/passkeys/register`, csrf, {
    name: form.elements.name.value,
    credential: {
      id: credential.id,
      rawId: bytesToB64url(credential.rawId),
      type: credential.type,
      response: {
        clientDataJSON: bytesToB64url(r.clientDataJSON),
        attestationObject: bytesToB64url(r.attestationObject),
        transports: r.getTransports ? r.getTransports() : [],
      },
      clientExtensionResults: credential.getClientExtensionResults(),
    },
  });
  window.location.reload();
}

async function signDecision(form) {
  const status = document.getElementById("sign-status");
  const comment = form.elements.comment.value.trim();
  status.textContent = "Waiting for your authenticator to sign this decision…";
  const options = await postJson(form.dataset.options, form.dataset.csrf, {
    verdict: form.elements.verdict.value,
    comment: comment,
  });
  options.challenge = b64urlToBytes(options.challenge);
  for (const c of options.allowCredentials || []) c.id = b64urlToBytes(c.id);
  const credential = await navigator.credentials.get({ publicKey: options });
  const r = credential.response;
  form.elements.assertion.value = JSON.stringify({
    id: credential.id,
    response: {
      authenticatorData: bytesToB64url(r.authenticatorData),
      clientDataJSON: bytesToB64url(r.clientDataJSON),
      signature: bytesToB64url(r.signature),
    },
  });
  form.elements.comment.value = comment;
  form.submit();
}

document.addEventListener("DOMContentLoaded", () => {
  const registration = document.getElementById("passkey-register");
  if (registration) {
    registration.addEventListener("submit", (event) => {
      event.preventDefault();
      register(registration).catch((error) => {
        document.getElementById("passkey-status").textContent = `Not registered: ${error.message}`;
      });
    });
  }
  for (const form of document.querySelectorAll("form[data-sign='passkey']")) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!form.reportValidity()) return;
      signDecision(form).catch((error) => {
        document.getElementById("sign-status").textContent = `Not signed, nothing recorded: ${error.message}`;
      });
    });
  }
});
