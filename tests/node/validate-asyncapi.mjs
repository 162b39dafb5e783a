// Parses AsyncAPI documents with the official parser (@asyncapi/parser) and fails on any
// diagnostic of severity error. Usage: node validate-asyncapi.mjs <file>...
// Prints one JSON line per document: {"file", "errors": [...], "warnings": n, "channels": n}.
import { readFile } from "node:fs/promises";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";

const parser = new Parser();
let failed = false;
for (const file of process.argv.slice(2)) {
  const { document, diagnostics } = await parser.parse(await readFile(file, "utf8"));
  const errors = diagnostics
    .filter((d) => d.severity === DiagnosticSeverity.Error)
    .map((d) => `${d.code}: ${d.message} at ${d.path.join("/")}`);
  const warnings = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Warning);
  if (!document || errors.length) failed = true;
  console.log(
    JSON.stringify({
      file,
      parsed: Boolean(document),
      errors,
      warnings: warnings.map((d) => `${d.code}: ${d.message} at ${d.path.join("/")}`),
      channels: document ? document.channels().length : 0,
      operations: document ? document.operations().length : 0,
    }),
  );
}
process.exit(failed ? 1 : 0);
