import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

// For `npm run test:mutation` (Stryker): the unit tests only. Integration tests
// start servers and databases, far too slow to run once per mutant, and the
// mutated modules are covered by unit tests of their own. The token-flow unit
// tests open an in-process PGlite from the migrated template the global setup
// builds once (test/support/unit-db.ts).
export default defineConfig({
  // @tessera/client from its sources, as in vitest.config.ts.
  resolve: { alias: [{ find: /^@tessera\/client$/, replacement: fileURLToPath(new URL("./clients/typescript/src/index.ts", import.meta.url)) }] },
  test: {
    include: ["test/unit/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
