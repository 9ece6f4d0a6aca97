import { defineConfig } from "vitest/config";

// For `npm run test:mutation` (Stryker): the unit tests only. Integration tests
// start servers and databases, far too slow to run once per mutant, and the
// mutated modules are covered by unit tests of their own.
export default defineConfig({
  test: {
    include: ["test/unit/**/*.test.ts"],
    testTimeout: 30_000,
  },
});
