// Poseidon reference vectors from circomlib's own JavaScript (circomlibjs), for
// zk/tests/data/circomlib-poseidon.json. Run through scripts/poseidon-reference.sh, which
// installs circomlibjs outside the repository and runs this file next to it.
//
// Every value comes from circomlib's code: `buildPoseidonReference` (plain JavaScript, the
// one whose outputs are written), checked against `buildPoseidon` (wasm) and
// `buildPoseidonOpt` on every call. vichain's sponge is rebuilt here from circomlib's t = 3
// permutation, `poseidon([s1, s2], s0, 3)`, following the rule documented in
// zk/src/poseidon.rs and zk/src/commit.rs; no vichain code runs.

import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  buildPoseidon,
  buildPoseidonOpt,
  buildPoseidonReference,
} from "circomlibjs";

// The version of `pkg` as resolved from `from` (a directory): its package.json is read
// directly, since circomlibjs's "exports" do not list it.
function version(pkg, from) {
  const entry = createRequire(join(from, "noop.js")).resolve(pkg);
  let dir = dirname(entry);
  while (!existsSync(join(dir, "package.json")) || !dir.endsWith(join("node_modules", pkg))) {
    if (dir === dirname(dir)) throw new Error(`no package.json for ${pkg}`);
    dir = dirname(dir);
  }
  return JSON.parse(readFileSync(join(dir, "package.json"), "utf8")).version;
}
const here = dirname(fileURLToPath(import.meta.url));
const circomlibjsDir = join(here, "node_modules", "circomlibjs");

const reference = await buildPoseidonReference();
const wasm = await buildPoseidon();
const opt = await buildPoseidonOpt();
const F = reference.F;
const P = F.p;

const hex = (x) => "0x" + BigInt(x).toString(16).padStart(64, "0");
const big = (x) => BigInt(x);
const mod = (x) => ((x % P) + P) % P;

// circomlib's Poseidon with `inputs.length + 1` state elements; `nOut` elements of the
// final state (the first one when `nOut` is 1). All three implementations must agree.
function circomlib(inputs, initState, nOut) {
  const outs = [reference, wasm, opt].map((poseidon) => {
    const r = poseidon(inputs, initState, nOut);
    const list = nOut > 1 ? r : [r];
    return list.map((e) => poseidon.F.toObject(e));
  });
  for (const o of outs.slice(1)) {
    if (o.join() !== outs[0].join()) {
      throw new Error(`circomlibjs implementations disagree on ${inputs} / ${initState}`);
    }
  }
  return nOut > 1 ? outs[0] : outs[0][0];
}

// The t = 3 permutation of the state [s0, s1, s2] (s0 is circomlib's `initState`).
const permute = (state) => circomlib([state[1], state[2]], state[0], 3);

// vichain's sponge (zk/src/poseidon.rs `sponge_hash`): state [capacity, rate, rate], all
// zero; the elements are added into the two rate slots two at a time, with a permutation
// after each pair that is followed by more elements and one before the squeeze (so a
// final partial pair is not padded, and an empty input is a single permutation); the
// output is the first rate element.
function sponge(elements) {
  let state = [0n, 0n, 0n];
  let i = 0;
  do {
    const chunk = elements.slice(i, i + 2);
    chunk.forEach((e, k) => {
      state[1 + k] = mod(state[1 + k] + e);
    });
    state = permute(state);
    i += 2;
  } while (i < elements.length);
  return state[1];
}

// vichain's commitment layout v1 (zk/src/commit.rs): values offset by 2^(bits-1), packed
// floor(248 / bits) to a limb, first value in the least significant bits.
function pack(values, bits) {
  const per = Math.floor(248 / bits);
  const limbs = [];
  for (let i = 0; i < values.length; i += per) {
    let limb = 0n;
    values.slice(i, i + per).forEach((v, k) => {
      limb += (BigInt(v) + (1n << BigInt(bits - 1))) << BigInt(bits * k);
    });
    limbs.push(mod(limb));
  }
  return limbs;
}
const tag = (s) => mod(BigInt("0x" + Buffer.from(s, "ascii").toString("hex")));
const saltField = (bytes) => mod(BigInt("0x" + Buffer.from(bytes).reverse().toString("hex")));

function vectorCommitment(values, bits, salt) {
  const elements = [
    tag("vichain.zk.vector.v1"),
    BigInt(values.length),
    BigInt(bits),
    saltField(salt),
    ...pack(values, bits),
  ];
  return { elements, output: sponge(elements) };
}

// Large field elements that are not special: sha256 of a label, reduced mod p.
const pseudo = (label) =>
  mod(BigInt("0x" + createHash("sha256").update(`vichain.poseidon.reference.${label}`).digest("hex")));

const pairs = [
  [0n, 0n],
  [1n, 2n],
  [0n, 1n],
  [1n, 0n],
  [P - 1n, 0n],
  [0n, P - 1n],
  [P - 1n, P - 1n],
  [P - 2n, 1n],
  [1n << 128n, (1n << 253n) + 7n],
  [pseudo("a"), pseudo("b")],
  [tag("vichain.zk.model.v1"), 2n],
];

const states = [
  [0n, 0n, 0n],
  [0n, 1n, 2n],
  [1n, 2n, 3n],
  [P - 1n, P - 1n, P - 1n],
  [pseudo("c"), pseudo("d"), pseudo("e")],
  [pseudo("f"), 0n, P - 1n],
];

const spongeInputs = [
  [],
  [1n],
  [1n, 2n],
  [1n, 2n, 3n],
  // The five elements of poseidon.rs's native_and_circuit_agree: i * 1_000_003 + 17.
  [0n, 1n, 2n, 3n, 4n].map((i) => i * 1000003n + 17n),
  [P - 1n, P - 1n, P - 1n, P - 1n, P - 1n],
  [1n, 2n, 3n, 4n, 5n, 6n, 7n],
  [pseudo("g"), pseudo("h"), pseudo("i"), pseudo("j"), pseudo("k"), pseudo("l")],
];

const vectors = [
  // commit.rs pinned_vectors: logits, zero salt.
  { values: [-5, 0, 70000], bits: 32, salt: new Array(32).fill(0) },
  // commit.rs pinned_vectors: a 40-value int8 input (two limbs), salt [1; 32].
  {
    values: Array.from({ length: 40 }, (_, i) => i * 5 - 100),
    bits: 8,
    salt: new Array(32).fill(1),
  },
];

const out = {
  generator: "scripts/poseidon-reference.sh (scripts/poseidon-reference.mjs)",
  circomlibjs_version: version("circomlibjs", here),
  // The field arithmetic circomlibjs runs on (as circomlibjs resolves it).
  ffjavascript_version: version("ffjavascript", circomlibjsDir),
  implementation: "buildPoseidonReference, checked against buildPoseidon (wasm) and buildPoseidonOpt",
  field_modulus: hex(P),
  encoding: "field elements as 0x-prefixed 64-digit big-endian hex",
  hash2: pairs.map(([a, b]) => ({
    inputs: [hex(a), hex(b)],
    output: hex(circomlib([a, b], undefined, 1)),
  })),
  permutation: states.map((s) => ({
    state: s.map(hex),
    output: permute(s).map(hex),
  })),
  sponge: spongeInputs.map((e) => ({
    inputs: e.map(hex),
    output: hex(sponge(e)),
  })),
  vector_commitment: vectors.map(({ values, bits, salt }) => {
    const { elements, output } = vectorCommitment(values, bits, salt);
    return {
      values,
      bits,
      salt: Buffer.from(salt).toString("hex"),
      elements: elements.map(hex),
      output: hex(output),
    };
  }),
};

process.stdout.write(JSON.stringify(out, null, 2) + "\n");
// ffjavascript's wasm curve keeps worker threads alive.
process.exit(0);
