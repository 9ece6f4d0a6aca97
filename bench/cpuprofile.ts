// Summarises a V8 .cpuprofile (node --cpu-prof) by self time:
//   node bench/cpuprofile.ts <file.cpuprofile> [--from S] [--to S] [--top N] [--inclusive]
// --from/--to keep the samples between S seconds after the profile began
// (≈ the server's spawn; the exchange and assertion-verify reports print the
// load's span when BENCH_START profiles). Prints the top functions by self
// time (share of the busy, i.e. non-idle, samples) and the same grouped by
// area: Tessera's src/ directories, packages under node_modules, Node's own
// JavaScript (node:*), and V8's pseudo-frames ((garbage collector), (program));
// and by the innermost frame of Tessera or a package (Node's JavaScript and
// native frames folded into their caller: crypto.verify's time lands on the
// function of src/ that called it).
import { readFileSync } from "node:fs";

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const args = process.argv.slice(2);
const option = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : undefined;
};
const file = args.find((a, i) => !a.startsWith("--") && !args[i - 1]?.startsWith("--"));
if (!file) throw new Error("usage: node bench/cpuprofile.ts <file.cpuprofile> [--from S] [--to S] [--top N] [--inclusive]");
const from = option("--from") ?? 0;
const to = option("--to") ?? Infinity;
const top = option("--top") ?? 25;

const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const self = new Map<number, number>();
let t = profile.startTime;
let busy = 0;
let idle = 0;
for (let i = 0; i < profile.samples.length; i++) {
  t += profile.timeDeltas[i]!;
  const s = (t - profile.startTime) / 1e6;
  if (s < from || s > to) continue;
  // A sample's time is the interval up to the next one.
  const dt = profile.timeDeltas[i + 1] ?? 0;
  const node = byId.get(profile.samples[i]!)!;
  if (node.callFrame.functionName === "(idle)") {
    idle += dt;
    continue;
  }
  busy += dt;
  self.set(node.id, (self.get(node.id) ?? 0) + dt);
}

function area(url: string, name: string): string {
  if (!url) return name.startsWith("(") ? name : "(native)";
  if (url.startsWith("node:")) return "node:* (Node's JavaScript)";
  const nm = url.lastIndexOf("/node_modules/");
  if (nm >= 0) {
    const rest = url.slice(nm + "/node_modules/".length).split("/");
    return `node_modules/${rest[0]!.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  const src = url.indexOf("/src/");
  if (src >= 0) {
    const parts = url.slice(src + 1).split("/");
    return parts.length > 2 ? `${parts[0]}/${parts[1]}/` : parts.join("/");
  }
  return url.replace(/^file:\/\//, "");
}
const short = (url: string) => url.replace(/^file:\/\/.*?\/(node_modules|src|gen)\//, "$1/").replace(/^file:\/\//, "");

const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const isCode = (url: string) => !!url && !url.startsWith("node:");

const functions = new Map<string, number>();
const callers = new Map<string, number>();
/** Inclusive time: every function on a sample's stack, once per sample (asynchronous continuations start new stacks). */
const inclusive = new Map<string, number>();
const frameKey = (n: Node) => `${n.callFrame.functionName || "(anonymous)"}  ${n.callFrame.url ? `${short(n.callFrame.url)}:${n.callFrame.lineNumber + 1}` : ""}`;
const areas = new Map<string, number>();
for (const [id, dt] of self) {
  const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
  const key = `${functionName || "(anonymous)"}  ${url ? `${short(url)}:${lineNumber + 1}` : ""}`;
  functions.set(key, (functions.get(key) ?? 0) + dt);
  const a = area(url, functionName);
  areas.set(a, (areas.get(a) ?? 0) + dt);
  let up: number | undefined = id;
  while (up !== undefined && !isCode(byId.get(up)!.callFrame.url)) up = parent.get(up);
  const frame = up === undefined ? undefined : byId.get(up)!.callFrame;
  const caller = !isCode(url) && frame ? `${frame.functionName || "(anonymous)"}  ${short(frame.url)}:${frame.lineNumber + 1}  ← ${functionName || "(anonymous)"}` : key;
  callers.set(caller, (callers.get(caller) ?? 0) + dt);
  const onStack = new Set<string>();
  for (let n: number | undefined = id; n !== undefined; n = parent.get(n)) onStack.add(frameKey(byId.get(n)!));
  for (const k of onStack) inclusive.set(k, (inclusive.get(k) ?? 0) + dt);
}
const pct = (dt: number) => `${((dt / busy) * 100).toFixed(1).padStart(5)} %`;
const span = `${from}–${to === Infinity ? ((profile.endTime - profile.startTime) / 1e6).toFixed(1) : to} s`;
console.log(`${file}: ${span} of the profile, busy ${(busy / 1e6).toFixed(2)} s, idle ${(idle / 1e6).toFixed(2)} s (${((busy / (busy + idle)) * 100).toFixed(0)} % busy)`);
console.log(`\ntop ${top} functions by self time (share of busy time):`);
for (const [key, dt] of [...functions].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(dt)}  ${key}`);
console.log(`\ntop ${top} by the innermost frame of Tessera or a package (Node's JavaScript and native code folded into it; ← the folded frame):`);
for (const [key, dt] of [...callers].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(dt)}  ${key}`);
if (args.includes("--inclusive")) {
  console.log(`\ntop ${top} application and package functions by inclusive time (on the stack; a continuation after an await is a new stack):`);
  for (const [key, dt] of [...inclusive].filter(([k]) => /(src|gen|node_modules)\//.test(k)).sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(dt)}  ${key}`);
}
console.log("\nby area:");
for (const [key, dt] of [...areas].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(dt)}  ${key}`);
