// `npm run bench [startup|verify|issue]`: every figure is measured against a
// floor in the same run; see bench/RESULTS.md for recorded results.
import { cpus } from "node:os";
import { benchIssue, reportIssue } from "./issue.ts";
import { benchStartup, reportStartup } from "./startup.ts";
import { benchVerify, reportVerify } from "./verify.ts";

const only = process.argv[2];
console.log(`Tessera benchmarks — ${new Date().toISOString()} — node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? "?"})\n`);
if (!only || only === "startup") console.log(`## startup\n${reportStartup(await benchStartup())}\n`);
if (!only || only === "verify") console.log(`## verify\n${reportVerify(await benchVerify())}\n`);
if (!only || only === "issue") console.log(`## issue\n${reportIssue(await benchIssue())}\n`);
