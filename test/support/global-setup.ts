// Builds one migrated PGlite data directory per run; each test server starts
// from a copy of it (about 0.8 s) instead of running initdb (about 5 s).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { migrate, openDatabase } from "../../src/db/orm.ts";

export default async function setup(project: TestProject): Promise<() => void> {
  const dir = mkdtempSync(join(tmpdir(), "tessera-template-"));
  const orm = await openDatabase({ dataDir: dir });
  await migrate(orm);
  await orm.close(true);
  // The cluster itself (openDatabase keeps it in <dataDir>/pg): servers copy it to their own <dataDir>/pg.
  project.provide("pgliteTemplate", join(dir, "pg"));
  return () => rmSync(dir, { recursive: true, force: true });
}

declare module "vitest" {
  export interface ProvidedContext {
    pgliteTemplate: string;
  }
}
