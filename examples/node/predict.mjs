// Price diamonds with the exported diamond_price .onnx in Node, with onnxruntime-node only.
//
//   npm ci --ignore-scripts                      # once, in this folder
//   node predict.mjs MODEL.onnx rows.json        # or: ... | node predict.mjs MODEL.onnx
//
// rows.json: [{"carat": 0.7, "cut": "Ideal", "color": "G", "clarity": "VS2"}, ...]
// Prints {"name", "version", "prices", "problems"} (and "price_ranges" for a model with a range:
// {"low", "high", "level"} per row): a price in USD (rounded to cents) per row, or
// null with the reason in "problems" when the row cannot be priced. The rule: validate every row
// against the feature schema the model carries, and treat NaN as "cannot price"; never
// substitute a default.
import { readFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import * as ort from 'onnxruntime-node';

// onnxruntime-node exposes no custom metadata map, so read the model's metadata_props
// (ModelProto field 14, StringStringEntryProto {key = 1, value = 2}) from the protobuf itself.
function* fields(buf) {
  const at = { pos: 0 };
  const varint = () => {
    let value = 0;
    for (let scale = 1; ; scale *= 128) {
      if (at.pos >= buf.length) throw new Error('truncated protobuf');
      const byte = buf[at.pos++];
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
    }
  };
  while (at.pos < buf.length) {
    const key = varint();
    const [field, wire] = [Math.floor(key / 8), key % 8];
    if (wire === 0) yield [field, varint()];
    else if (wire === 1) at.pos += 8;
    else if (wire === 5) at.pos += 4;
    else if (wire === 2) {
      const size = varint();
      yield [field, buf.subarray(at.pos, at.pos + size)];
      at.pos += size;
    } else throw new Error(`unsupported protobuf wire type ${wire}`);
  }
}

/** The model's metadata_props as an object: name, version, feature_schema (JSON), ... */
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

/** Why ``row`` is outside the feature schema, or null when it is inside. */
export function problem(row, schema) {
  for (const [name, { min, max }] of Object.entries(schema.numeric)) {
    const value = row?.[name];
    if (typeof value !== 'number' || !(value >= min && value <= max)) return `${name} must be a number from ${min} to ${max}`;
  }
  for (const [name, allowed] of Object.entries(schema.categorical)) {
    if (!allowed.includes(row?.[name])) return `${name} must be one of ${allowed.join(', ')}`;
  }
  return null;
}

/** The model's raw float32 prices for ``rows``: NaN for every row outside the schema. */
export async function modelPrices(session, schema, rows) {
  return (await modelOutputs(session, schema, rows)).price.data;
}

/** Every output of the model for ``rows`` (``price``, and ``price_low``/``price_high`` when it has a range). */
export async function modelOutputs(session, schema, rows) {
  const feeds = {};
  const shape = [rows.length, 1];
  for (const name of Object.keys(schema.numeric)) {
    const values = Float32Array.from(rows, (r) => (typeof r?.[name] === 'number' ? r[name] : NaN));
    feeds[name] = new ort.Tensor('float32', values, shape);
  }
  for (const name of Object.keys(schema.categorical)) {
    feeds[name] = new ort.Tensor('string', rows.map((r) => (typeof r?.[name] === 'string' ? r[name] : '')), shape);
  }
  return session.run(feeds);
}

async function main([modelPath, rowsPath]) {
  if (!modelPath) throw new Error('usage: node predict.mjs MODEL.onnx [rows.json]  (rows on stdin without a file)');
  const bytes = await readFile(modelPath);
  const meta = metadataProps(bytes);
  const schema = JSON.parse(meta.feature_schema);
  const session = await ort.InferenceSession.create(bytes);
  let text = '';
  if (rowsPath) text = await readFile(rowsPath, 'utf8');
  else for await (const chunk of process.stdin) text += chunk;
  const parsed = JSON.parse(text);
  const rows = Array.isArray(parsed) ? parsed : parsed.diamonds;
  const out = rows.length ? await modelOutputs(session, schema, rows) : {};
  const raw = out.price?.data ?? [];
  const problems = rows.map((row, i) => problem(row, schema) ?? (Number.isFinite(raw[i]) ? null : 'the model cannot price this row'));
  const cents = (x) => Math.round(x * 100) / 100;
  const prices = rows.map((_, i) => (problems[i] === null ? cents(raw[i]) : null));
  const result = { name: meta.name, version: Number(meta.version), prices, problems };
  if (meta.price_range_level) {
    // The model's price range: low <= price <= high for the share of diamonds the level says (0.8 = 80%).
    const level = Number(meta.price_range_level);
    result.price_ranges = rows.map((_, i) => (problems[i] === null
      ? { low: cents(out.price_low.data[i]), high: cents(out.price_high.data[i]), level }
      : null));
  }
  console.log(JSON.stringify(result));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main(process.argv.slice(2)).catch((err) => {
    console.error(err.message);
    process.exitCode = 1;
  });
}
