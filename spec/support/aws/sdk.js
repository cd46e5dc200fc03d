// Drives `bin/payhsm serve aws` with the official AWS SDKs for JavaScript, unpatched:
// aws-sdk v2 (AWS.PaymentCryptography) and @aws-sdk/client-payment-cryptography v3,
// pointed at the server by endpoint override. Reads a JSON array of steps on stdin:
//   {sdk: "v2" | "v3", op: "CreateKey", input: {...},
//    creds: {accessKeyId, secretAccessKey} (default: the first step's or the env),
//    service: "data" (v2 only: AWS.PaymentCryptographyData, the data plane's REST paths),
//    sdk: "raw", path: "/as2805kekvalidation/generate" (a data-plane operation the v2 SDK
//    predates: the JSON input POSTed to path, signed by the v2 SDK's own AWS.Signers.V4),
//    clockOffsetMs: n (the client's clock skew), attempts: n (v3 retries, default 1),
//    alterBody: true ("key/" becomes "KEY/" in the body after signing)}
// and writes one JSON array of results: {ok: true, output} or
// {ok: false, name, className, status, message}. A string "$N.path.to.member" in an input
// is replaced by that member of step N's output (0-based), e.g. "$0.Key.KeyArn".
'use strict';
const path = require('path');
const modules = path.join(__dirname, '..', '..', '..', 'tools', 'node', 'node_modules');
const AWS = require(path.join(modules, 'aws-sdk'));
const v3 = require(path.join(modules, '@aws-sdk', 'client-payment-cryptography'));

const endpoint = process.env.AWS_ENDPOINT;
const region = process.env.AWS_REGION_NAME || 'us-east-1';
const defaultCreds = { accessKeyId: process.env.AWS_KEY_ID, secretAccessKey: process.env.AWS_SECRET };

function resolve(v, results) {
  if (typeof v === 'string') {
    const m = /^\$(\d+)\.(.+)$/.exec(v);
    if (!m) return v;
    let x = results[Number(m[1])].output;
    for (const p of m[2].split('.')) x = x[p];
    return x;
  }
  if (Array.isArray(v)) return v.map((x) => resolve(x, results));
  if (v && typeof v === 'object') {
    const o = {};
    for (const k of Object.keys(v)) o[k] = resolve(v[k], results);
    return o;
  }
  return v;
}

function lowerFirst(s) { return s[0].toLowerCase() + s.slice(1); }

function plain(x) { return JSON.parse(JSON.stringify(x, (k, v) => (k === '$metadata' ? undefined : v))); }

async function runV2(step, input) {
  const creds = step.creds || defaultCreds;
  const Service = step.service === 'data' ? AWS.PaymentCryptographyData : AWS.PaymentCryptography;
  const client = new Service({
    endpoint, region, accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey,
    maxRetries: 0, correctClockSkew: false, systemClockOffset: step.clockOffsetMs || 0,
    sslEnabled: endpoint.startsWith('https'),
  });
  const req = client[lowerFirst(step.op)](input);
  if (step.alterBody) {
    req.on('send', (resp) => {
      const h = resp.request.httpRequest;
      h.body = h.body.replace('key/', 'KEY/'); // same length: Content-Length still holds
    }, true);
  }
  try {
    return { ok: true, output: plain(await req.promise()) };
  } catch (e) {
    return { ok: false, name: e.code, className: e.code, status: e.statusCode, message: e.message,
      reason: e.Reason };
  }
}

async function runV3(step, input) {
  const creds = step.creds || defaultCreds;
  const client = new v3.PaymentCryptographyClient({
    endpoint, region, credentials: creds, maxAttempts: step.attempts || 1,
    systemClockOffset: step.clockOffsetMs || 0,
  });
  if (step.alterBody) {
    client.middlewareStack.add((next) => async (args) => {
      args.request.body = args.request.body.replace('key/', 'KEY/');
      return next(args);
    }, { step: 'deserialize', name: 'alterBodyAfterSigning' });
  }
  const Command = v3[step.op + 'Command'];
  try {
    const out = await client.send(new Command(input));
    return { ok: true, output: plain(out), clockOffsetMs: client.config.systemClockOffset };
  } catch (e) {
    return { ok: false, name: e.name, className: e.constructor && e.constructor.name,
      isModeled: e instanceof v3.PaymentCryptographyServiceException,
      status: e.$metadata && e.$metadata.httpStatusCode, message: e.message };
  }
}

// A data-plane request the v2 SDK has no method for, signed with its SigV4 signer and sent
// with Node's http; the result as the SDK steps give it, plus Reason of the error body.
function runRaw(step, input) {
  const creds = step.creds || defaultCreds;
  const ep = new AWS.Endpoint(endpoint);
  const req = new AWS.HttpRequest(ep, region);
  req.method = 'POST';
  req.path = step.path;
  req.body = JSON.stringify(input);
  req.headers.Host = ep.host;
  req.headers['Content-Type'] = 'application/json';
  new AWS.Signers.V4(req, 'payment-cryptography').addAuthorization(
    new AWS.Credentials(creds.accessKeyId, creds.secretAccessKey), new Date());
  return new Promise((resolve) => {
    const http = require('http');
    const r = http.request({ host: ep.hostname, port: ep.port, method: 'POST', path: req.path, headers: req.headers },
      (res) => {
        let text = '';
        res.on('data', (c) => { text += c; });
        res.on('end', () => {
          const body = text ? JSON.parse(text) : {};
          if (res.statusCode === 200) resolve({ ok: true, output: body });
          else {
            resolve({ ok: false, name: res.headers['x-amzn-errortype'], status: res.statusCode,
              message: body.message || body.Message, reason: body.Reason });
          }
        });
      });
    r.on('error', (e) => resolve({ ok: false, name: 'transport', message: String(e) }));
    r.end(req.body);
  });
}

// {sdk: "node", op: "oaepEncrypt", input: {Certificate (base64 PEM, as AWS gives it), KeyHex,
// Hash: "sha256" | "sha512"}} -> {Cryptogram: upper-case hex}: the key cryptogram an issuer
// makes with Node's own crypto (OpenSSL through Node), RSAES-OAEP, MGF1 with the same hash.
function nodeStep(step, input) {
  const crypto = require('crypto');
  if (step.op !== 'oaepEncrypt') throw new Error('unknown node step ' + step.op);
  const pem = Buffer.from(input.Certificate, 'base64').toString('latin1');
  const key = new crypto.X509Certificate(pem).publicKey;
  const out = crypto.publicEncrypt({ key, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: input.Hash },
    Buffer.from(input.KeyHex, 'hex'));
  return { ok: true, output: { Cryptogram: out.toString('hex').toUpperCase() } };
}

async function main() {
  let text = '';
  for await (const chunk of process.stdin) text += chunk;
  const steps = JSON.parse(text);
  const results = [];
  for (const step of steps) {
    const input = resolve(step.input || {}, results);
    if (step.sdk === 'node') results.push(nodeStep(step, input));
    else if (step.sdk === 'raw') results.push(await runRaw(step, input));
    else results.push(step.sdk === 'v2' ? await runV2(step, input) : await runV3(step, input));
  }
  process.stdout.write(JSON.stringify(results));
}

main().catch((e) => { process.stderr.write(String(e && e.stack || e)); process.exit(2); });
