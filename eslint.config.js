// @ts-check
import js from "@eslint/js";
import tseslint from "typescript-eslint";
import { importX } from "eslint-plugin-import-x";

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", "charts/", ".scratch/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/consistent-type-imports": "error",
      "no-restricted-syntax": [
        "error",
        { selector: "TSEnumDeclaration", message: "use an `as const` object, not enum" },
      ],
    },
  },
  {
    // The product: no import cycle (between modules, through the folders' index.ts too),
    // and never a test file.
    files: ["src/**/*.ts"],
    ignores: ["src/**/*.test.ts"],
    plugins: { "import-x": importX },
    settings: {
      // Our imports name the .ts file itself: Node's own resolution finds it, no resolver
      // for TypeScript paths is needed; the plugin parses .ts files with typescript-eslint.
      "import-x/extensions": [".ts"],
      "import-x/parsers": { "@typescript-eslint/parser": [".ts"] },
      "import-x/resolver": { node: { extensions: [".ts"] } },
    },
    rules: {
      "import-x/no-cycle": ["error", { ignoreExternal: true }],
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: ["**/test/**", "*.test.ts", "**/*.test.ts"],
              message: "product code never imports test code",
            },
          ],
        },
      ],
    },
  },
  {
    // Tests (and the development environment that serves them) mutate fixture copies freely.
    files: ["**/*.test.ts", "test/**/*.ts", "bench/**/*.ts", "src/devenv/**/*.ts"],
    rules: { "@typescript-eslint/no-explicit-any": "off" },
  },
);
