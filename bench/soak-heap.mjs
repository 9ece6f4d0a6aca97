// A preload for the server under a soak (bench/soak.ts sets it with
// BENCH_SOAK_HEAP=1; by hand: node --import ./bench/soak-heap.mjs dist/main.js).
// Plain JavaScript: a .ts preload would load Node's TypeScript stripper
// (~13 MB) into the very server whose memory it measures.
// Every BENCH_HEAPLOG_MS (default 2000) milliseconds it appends one JSON line
// to the file BENCH_HEAPLOG (stderr when unset) with process.memoryUsage()
// (rss, heapTotal, heapUsed, external, arrayBuffers, in bytes) and the size
// and use of each of V8's heap spaces, so that the JavaScript heap can be
// told apart from native memory (malloc arenas, grpc and socket buffers).
// With --expose-gc, BENCH_HEAPLOG_GC=1 runs a full GC before each sample
// (the heap that is live, not what the collector has not come to yet).
// Nothing in the server changes: the timer is unref'd and costs one
// memoryUsage() call per sample.
import { appendFileSync } from "node:fs";
import { getHeapSpaceStatistics } from "node:v8";

const file = process.env.BENCH_HEAPLOG;
const everyMs = Number(process.env.BENCH_HEAPLOG_MS ?? 2000);
const collect = process.env.BENCH_HEAPLOG_GC === "1" ? globalThis.gc : undefined;
const started = performance.now();

const timer = setInterval(() => {
  collect?.();
  const m = process.memoryUsage();
  const spaces = {};
  for (const s of getHeapSpaceStatistics()) spaces[s.space_name] = { size: s.space_size, used: s.space_used_size, physical: s.physical_space_size };
  const line = `${JSON.stringify({ pid: process.pid, t: Math.round(performance.now() - started) / 1000, ...m, spaces })}\n`;
  if (file) appendFileSync(file, line);
  else process.stderr.write(line);
}, everyMs);
timer.unref();
