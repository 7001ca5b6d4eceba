// Builds the e2e page into a static folder: `node build.mjs OUTDIR`.
//
//   OUTDIR/index.html          the page, with an import map
//   OUTDIR/vendor.js           react + react-dom + agentation, one development bundle
//   OUTDIR/shims/*.js          "react", "react-dom/client", "agentation" re-exported from vendor.js
//   OUTDIR/src/page.jsx        src/page.jsx after a JSX-only transform, same line numbers
//
// Why not one bundle: React 19 no longer records JSX source locations
// (`_debugSource`), so the toolbar finds `sourceFile` by calling the component
// with a throwing hook dispatcher and reading the component's stack frame. In a
// single bundle that frame would say `app.js:<bundle line>`; serving the page
// module on its own, line-preserved, makes it `src/page.jsx:<line>:<column>` of
// the real source file.
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.resolve(process.argv[2] ?? path.join(here, "dist"));
const require = createRequire(import.meta.url);

await rm(out, { recursive: true, force: true });
await mkdir(path.join(out, "shims"), { recursive: true });
await mkdir(path.join(out, "src"), { recursive: true });

await esbuild.build({
  entryPoints: [path.join(here, "src", "vendor.js")],
  outfile: path.join(out, "vendor.js"),
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  minify: false,
  define: { "process.env.NODE_ENV": '"development"' },
  logLevel: "warning",
});

const identifier = /^[A-Za-z_$][\w$]*$/;
const reactNames = Object.keys(require("react")).filter((n) => identifier.test(n) && n !== "default");
await writeFile(
  path.join(out, "shims", "react.js"),
  `import { React } from "../vendor.js";\nexport default React;\nexport const { ${reactNames.join(", ")} } = React;\n`,
);
await writeFile(path.join(out, "shims", "react-dom-client.js"), `export { createRoot } from "../vendor.js";\n`);
await writeFile(path.join(out, "shims", "agentation.js"), `export { Agentation } from "../vendor.js";\n`);

const source = await readFile(path.join(here, "src", "page.jsx"), "utf8");
const { code } = await esbuild.transform(source, {
  loader: "jsx",
  jsx: "transform", // classic runtime: React.createElement, nothing injected at the top
  format: "esm",
  target: "es2022",
  sourcefile: "src/page.jsx",
});
// The lines up to ProductCard's hook call must come out unchanged, or the
// toolbar's sourceFile would no longer name the real source line.
const srcLines = source.split("\n");
const outLines = code.split("\n");
const hookLine = srcLines.findIndex((l) => l.includes("useState(1)"));
for (let i = 0; i <= hookLine; i++) {
  if (srcLines[i] !== outLines[i]) {
    throw new Error(`page.jsx line ${i + 1} changed by the transform:\n  ${srcLines[i]}\n  ${outLines[i]}`);
  }
}
await writeFile(path.join(out, "src", "page.jsx"), code);

const importMap = {
  imports: {
    react: "/shims/react.js",
    "react-dom/client": "/shims/react-dom-client.js",
    agentation: "/shims/agentation.js",
  },
};
await writeFile(
  path.join(out, "index.html"),
  `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Agentation e2e shop</title>
<link rel="icon" href="data:,">
<script type="importmap">${JSON.stringify(importMap)}</script>
<style>
  body { font-family: system-ui, sans-serif; margin: 0; background: #f6f6f4; }
  .shop-page { max-width: 640px; margin: 48px auto; padding: 0 24px; }
  .product-card { background: #fff; border-radius: 12px; padding: 24px; box-shadow: 0 1px 4px rgba(0,0,0,.12); }
  .product-card label { display: block; margin: 16px 0; }
  .qty-input { width: 4em; margin-left: 8px; }
  .btn-primary { background: #1f6feb; color: #fff; border: 0; border-radius: 8px; padding: 10px 20px; font-size: 16px; }
</style>
</head>
<body>
<div id="root"></div>
<script type="module" src="/src/page.jsx"></script>
</body>
</html>
`,
);
console.log(out);
