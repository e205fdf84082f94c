// Validates speedscope JSON files against the file-format schema that the npm `speedscope`
// package ships (dist/release/file-format-schema.json), then checks what the schema cannot
// say: frame indices in range, one weight per sample, weights summing to endValue.
//
//   node validate.mjs FILE...      prints one `ok` line per file; exits 1 on the first error
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import Ajv from 'ajv';

const require = createRequire(import.meta.url);
const pkgDir = dirname(require.resolve('speedscope/package.json'));
const schemaPath = join(pkgDir, 'dist', 'release', 'file-format-schema.json');
const schema = JSON.parse(readFileSync(schemaPath, 'utf8'));
const validate = new Ajv({ allErrors: true, strict: false }).compile(schema);

function fail(file, msg) {
  console.error(`${file}: ${msg}`);
  process.exit(1);
}

const files = process.argv.slice(2);
if (files.length === 0) fail('validate.mjs', 'no files given');
for (const file of files) {
  const doc = JSON.parse(readFileSync(file, 'utf8'));
  if (!validate(doc)) fail(file, `schema (${schemaPath}): ${JSON.stringify(validate.errors)}`);
  const nFrames = doc.shared.frames.length;
  let samples = 0;
  doc.profiles.forEach((p, i) => {
    if (p.type !== 'sampled') fail(file, `profile ${i} is ${p.type}, expected sampled`);
    if (p.samples.length !== p.weights.length) {
      fail(file, `profile ${i}: ${p.samples.length} samples but ${p.weights.length} weights`);
    }
    p.samples.forEach((s, j) => s.forEach((f) => {
      if (!Number.isInteger(f) || f < 0 || f >= nFrames) {
        fail(file, `profile ${i} sample ${j}: frame index ${f} not in 0..${nFrames}`);
      }
    }));
    const sum = p.weights.reduce((a, b) => a + b, 0);
    if (sum !== p.endValue - p.startValue) {
      fail(file, `profile ${i}: weights sum to ${sum}, endValue - startValue is ${p.endValue - p.startValue}`);
    }
    samples += p.samples.length;
  });
  console.log(`ok ${file}: ${doc.profiles.length} profiles, ${nFrames} frames, ${samples} stacks`);
}
