// Builds dist/esm and dist/cjs with tsc (run by `npm run build` and by
// `npm pack` through prepack). Plain JavaScript so that it runs on any Node.
import { execFileSync } from "node:child_process";
import { chmodSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const tsc = createRequire(join(root, "package.json")).resolve("typescript/bin/tsc");
rmSync(join(root, "dist"), { recursive: true, force: true });
for (const project of ["tsconfig.esm.json", "tsconfig.cjs.json"]) {
  execFileSync(process.execPath, [tsc, "-p", join(root, project)], { stdio: "inherit", cwd: root });
}
writeFileSync(join(root, "dist/cjs/package.json"), JSON.stringify({ type: "commonjs" }) + "\n");
// tsc rewrites the sources' relative ".ts" imports to ".js" in JavaScript, not in declarations:
// rewrite them there too, so that TypeScript before 5.0 (and tools that do not know ".ts" imports) read them.
for (const entry of readdirSync(join(root, "dist"), { recursive: true })) {
  if (!String(entry).endsWith(".d.ts")) continue;
  const file = join(root, "dist", String(entry));
  const text = readFileSync(file, "utf8");
  const rewritten = text.replace(/((?:from|import)\s*\(?\s*["'])(\.{1,2}\/[^"']+)\.ts(["'])/g, "$1$2.js$3");
  if (rewritten !== text) writeFileSync(file, rewritten);
}
for (const format of ["esm", "cjs"]) {
  const cli = join(root, "dist", format, "cli.js");
  try {
    const text = readFileSync(cli, "utf8");
    if (!text.startsWith("#!")) writeFileSync(cli, "#!/usr/bin/env node\n" + text);
    chmodSync(cli, 0o755);
  } catch (error) {
    if (error.code !== "ENOENT") throw error;
  }
}
