// Check custom resources (KEDA ScaledObject / TriggerAuthentication, ServiceMonitor) offline.
//
//   node <validators dir>/validate-crds-<id>.mjs docs.json
//
// docs.json holds a JSON array of objects. Each is checked twice: by its @kubernetes-models class
// (the CRD's JSON schema: types, enums, required fields) and by TypeScript against the same
// package's types, which rejects fields the CRD does not know (a typo the API server would prune
// silently). Prints one line per problem and exits 1 if there was any; 2 for an unknown kind.
// Must sit in the folder that scripts/install-crd-validators.sh printed, so imports resolve there.
import { readFileSync, writeFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const MODELS = {
  "keda.sh/v1alpha1/ScaledObject": "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject",
  "keda.sh/v1alpha1/TriggerAuthentication": "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication",
  "monitoring.coreos.com/v1/ServiceMonitor": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor",
};

const here = dirname(fileURLToPath(import.meta.url));
const docs = JSON.parse(readFileSync(process.argv[2], "utf8"));
const problems = [];

for (const [i, doc] of docs.entries()) {
  const key = `${doc.apiVersion}/${doc.kind}`;
  const path = MODELS[key];
  if (!path) {
    console.log(`unknown custom resource ${key}`);
    process.exit(2);
  }
  const cls = (await import(path))[doc.kind];
  try {
    new cls(doc).validate();
  } catch (err) {
    problems.push(`${key} ${doc.metadata?.name} (#${i}): ${err.message}`);
  }
}

// One TypeScript module assigning every object literal to its interface type.
const lines = [];
docs.forEach((doc, i) => {
  const path = MODELS[`${doc.apiVersion}/${doc.kind}`];
  lines.push(`import type { I${doc.kind} as T${i} } from "${path}";`);
  lines.push(`export const d${i}: T${i} = ${JSON.stringify(doc)};`);
});
const file = join(here, `check-${process.pid}.mts`);
writeFileSync(file, lines.join("\n") + "\n");
try {
  const program = ts.createProgram([file], {
    noEmit: true, strict: true, skipLibCheck: true,
    module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext,
  });
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const where = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start) : null;
    const index = where ? Math.floor(where.line / 2) : "?";
    const doc = docs[index] ?? {};
    problems.push(`${doc.apiVersion}/${doc.kind} ${doc.metadata?.name} (#${index}): ${ts.flattenDiagnosticMessageText(d.messageText, " ")}`);
  }
} finally {
  rmSync(file, { force: true });
}

for (const p of problems) console.log(p);
process.exit(problems.length ? 1 : 0);
