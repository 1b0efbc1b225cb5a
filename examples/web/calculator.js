// The diamond price calculator: onnxruntime-web prices the diamond in this browser, with the
// .onnx that modelsettings.json names. Every URL is relative to this file, so the same page works
// from any static server at the repository root (…/examples/web/) and from the API (/calculator/),
// which answers ../../modelsettings.json and the model file at the repository's own paths.
// The category lists and the carat range come from the model's own metadata (feature_schema).
import * as ort from './node_modules/onnxruntime-web/dist/ort.wasm.min.mjs';

export const SETTINGS_URL = new URL('../../modelsettings.json', import.meta.url);

// onnxruntime-web loads its WebAssembly from beside its bundle, on this host; one thread, no
// worker: the page needs neither cross-origin isolation nor anything but 'wasm-unsafe-eval'.
ort.env.wasm.wasmPaths = new URL('./node_modules/onnxruntime-web/dist/', import.meta.url).href;
ort.env.wasm.numThreads = 1;
ort.env.wasm.proxy = false;
ort.env.logLevel = 'error';

// onnxruntime-web exposes no custom metadata map, so read the model's metadata_props
// (ModelProto field 14, StringStringEntryProto {key = 1, value = 2}) from the protobuf itself.
function* fields(buf) {
  let pos = 0;
  const varint = () => {
    let value = 0;
    for (let scale = 1; ; scale *= 128) {
      if (pos >= buf.length) throw new Error('truncated protobuf');
      const byte = buf[pos++];
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
    }
  };
  while (pos < buf.length) {
    const key = varint();
    const [field, wire] = [Math.floor(key / 8), key % 8];
    if (wire === 0) yield [field, varint()];
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      const size = varint();
      yield [field, buf.subarray(pos, pos + size)];
      pos += size;
    } else throw new Error(`unsupported protobuf wire type ${wire}`);
  }
}

/** The model's metadata_props as an object: name, version, feature_schema (JSON), outputs (JSON), ... */
export function metadataProps(modelBytes) {
  const text = new TextDecoder();
  const props = {};
  for (const [field, entry] of fields(modelBytes)) {
    if (field !== 14) continue;
    const kv = Object.fromEntries([...fields(entry)].map(([f, v]) => [f, text.decode(v)]));
    props[kv[1] ?? ''] = kv[2] ?? '';
  }
  return props;
}

async function fetchOk(url) {
  const response = await fetch(url, { cache: 'no-cache' });
  if (!response.ok) throw new Error(`${url.pathname} answered ${response.status}`);
  return response;
}

const hex = (digest) => Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');

/** Settings, verified model bytes, their metadata and an onnxruntime-web session. */
export async function loadModel(settingsUrl = SETTINGS_URL) {
  const settings = await (await fetchOk(settingsUrl)).json();
  const modelUrl = new URL(settings.path, settingsUrl);
  const bytes = new Uint8Array(await (await fetchOk(modelUrl)).arrayBuffer());
  const digest = hex(await crypto.subtle.digest('SHA-256', bytes));
  if (digest !== settings.sha256) throw new Error(`${modelUrl.pathname} has sha256 ${digest}, not ${settings.sha256}`);
  const meta = metadataProps(bytes);
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'] });
  return { settings, meta, schema: JSON.parse(meta.feature_schema), session, runtime: ort.env.versions.web };
}

let current;
/** The model this page uses, loaded once. */
export function currentModel() {
  current ??= loadModel();
  return current;
}

/** Every output of the model for ``rows`` ({carat, cut, color, clarity}), as float32 arrays by name.
 * Fed as an embedder would: NaN or '' where a value is not usable; the model answers NaN there. */
export async function runModel({ session, schema }, rows) {
  const feeds = {};
  const shape = [rows.length, 1];
  for (const name of Object.keys(schema.numeric)) {
    const values = Float32Array.from(rows, (r) => (typeof r?.[name] === 'number' ? r[name] : NaN));
    feeds[name] = new ort.Tensor('float32', values, shape);
  }
  for (const name of Object.keys(schema.categorical)) {
    feeds[name] = new ort.Tensor('string', rows.map((r) => (typeof r?.[name] === 'string' ? r[name] : '')), shape);
  }
  const results = await session.run(feeds);
  return Object.fromEntries(session.outputNames.map((name) => [name, results[name].data]));
}

/** Why ``row`` cannot be priced, in words, or null when it is inside the feature schema. */
export function problem(row, schema) {
  for (const [name, { min, max }] of Object.entries(schema.numeric)) {
    const value = row[name];
    if (value === null || value === undefined) return `Enter a ${name} from ${min} to ${max}.`;
    if (typeof value !== 'number' || !(value >= min && value <= max)) {
      return `The ${name} must be a number from ${min} to ${max}.`;
    }
  }
  for (const [name, allowed] of Object.entries(schema.categorical)) {
    if (!allowed.includes(row[name])) return `Choose a ${name}: one of ${allowed.join(', ')}.`;
  }
  return null;
}

/** A carat as typed: with a decimal point or a decimal comma ("0,7" is 0.7, as most of the world
 * writes it); null when empty, NaN when it is not a plain decimal number. */
export function parseCarat(text) {
  const typed = String(text ?? '').trim();
  if (typed === '') return null;
  return /^[-+]?(\d+([.,]\d*)?|[.,]\d+)$/.test(typed) ? Number(typed.replace(',', '.')) : NaN;
}

const clip = (text) => JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text);

/** The form's values that a link's query string gives (``?carat=0.7&cut=Ideal&color=E&clarity=VS1``),
 * and, in words, those it gives that cannot be used. Other parameters are left alone. */
export function fromQuery(search, schema) {
  const params = new URLSearchParams(search);
  const values = {};
  const ignored = [];
  const { min, max } = schema.numeric.carat;
  if (params.has('carat')) {
    const raw = params.get('carat');
    const carat = parseCarat(raw);
    if (carat !== null && carat >= min && carat <= max) values.carat = String(carat);
    else ignored.push(`carat ${clip(raw)} (a number from ${min} to ${max})`);
  }
  for (const [name, allowed] of Object.entries(schema.categorical)) {
    if (!params.has(name)) continue;
    const raw = params.get(name);
    const found = allowed.find((value) => value.toLowerCase() === raw.trim().toLowerCase());
    if (found) values[name] = found;
    else ignored.push(`${name} ${clip(raw)} (one of ${allowed.join(', ')})`);
  }
  return { values, ignored };
}

/** The query string of a link to this diamond: the carat with a decimal point when it is a number. */
export function toQuery(caratText, choices) {
  const carat = parseCarat(caratText);
  const text = carat === null || Number.isNaN(carat) ? String(caratText ?? '').trim() : String(carat);
  return new URLSearchParams({ carat: text, ...choices }).toString();
}

const usd = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' });
const cents = (value) => usd.format(Math.round(value * 100) / 100);

async function start() {
  const form = document.getElementById('diamond');
  const [price, range, message, about] = ['price', 'range', 'message', 'model'].map((id) => document.getElementById(id));
  // data-row on the form: the input the shown answer is for (the tests wait on it).
  const show = (row, text, outputs) => {
    form.dataset.row = JSON.stringify(row);
    message.textContent = text;
    price.textContent = outputs ? cents(outputs.price) : '';
    price.dataset.value = outputs ? String(outputs.price) : '';
    range.hidden = !(outputs && 'price_low' in outputs);
    range.textContent = range.hidden ? '' : `${Math.round(level * 100)}% range: ${cents(outputs.price_low)} to ${cents(outputs.price_high)}`;
  };
  let model;
  let level = 0;
  try {
    model = await currentModel();
  } catch (error) {
    document.body.dataset.state = 'error';
    about.textContent = '';
    show(null, `The model cannot be loaded: ${error.message}`);
    return;
  }
  level = Number(model.meta.price_range_level ?? 0);
  const { schema, settings } = model;
  for (const [name, allowed] of Object.entries(schema.categorical)) {
    const select = document.getElementById(name);
    select.replaceChildren(...allowed.map((value) => new Option(value, value)));
    select.selectedIndex = Math.floor(allowed.length / 2);
  }
  const carat = document.getElementById('carat');
  // A link may carry the diamond: what fits the schema fills the form, the rest is named, not used.
  const linked = fromQuery(window.location.search, schema);
  for (const [name, value] of Object.entries(linked.values)) document.getElementById(name).value = value;
  const note = document.getElementById('link');
  note.hidden = linked.ignored.length === 0;
  note.textContent = note.hidden ? '' : `Not taken from the link: ${linked.ignored.join('; ')}.`;
  const choices = () => Object.fromEntries(Object.keys(schema.categorical).map((n) => [n, document.getElementById(n).value]));
  let asked = 0;
  const update = async () => {
    const turn = ++asked;
    const row = { carat: parseCarat(carat.value), ...choices() };
    const why = problem(row, schema);
    if (why) return show(row, why);
    const outputs = Object.fromEntries(Object.entries(await runModel(model, [row])).map(([k, v]) => [k, v[0]]));
    if (turn !== asked) return undefined; // a later input already answered
    if (!Number.isFinite(outputs.price)) return show(row, 'The model cannot price this diamond.');
    return show(row, '', outputs);
  };
  form.addEventListener('input', () => {
    // The address bar follows the form, so that the price can be shared as a link.
    const url = new URL(window.location.href);
    url.search = toQuery(carat.value, choices());
    window.history.replaceState(null, '', url);
    return update();
  });
  form.addEventListener('submit', (event) => event.preventDefault());
  for (const element of form.elements) element.disabled = false;
  about.textContent = `${settings.name} v${settings.version} (MAE $${settings.mae.toFixed(2)}), onnxruntime-web ${model.runtime}`;
  await update();
  document.body.dataset.state = 'ready';
}

if (document.getElementById('diamond')) start();
