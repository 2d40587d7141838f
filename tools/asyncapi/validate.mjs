// Parses and validates an AsyncAPI document with @asyncapi/parser (the AsyncAPI project's own
// parser: the specification's JSON Schema, its semantic rules and $ref resolution, local files
// included). Prints every diagnostic; exits 1 on any error or warning, 0 when clean.
import { resolve } from 'node:path';
import { Parser, fromFile } from '@asyncapi/parser';

const file = resolve(process.argv[2] ?? '../../docs/asyncapi.yaml');
const parser = new Parser();
const { document, diagnostics } = await fromFile(parser, file).parse();
const severities = ['error', 'warning', 'info', 'hint'];
for (const d of diagnostics) {
  console.log(`${severities[d.severity]} ${d.code} at ${d.path.join('.') || '/'}: ${d.message}`);
}
const problems = diagnostics.filter((d) => d.severity <= 1);
if (!document || problems.length > 0) {
  console.error(`${file}: ${problems.length} error(s)/warning(s)`);
  process.exit(1);
}
console.log(`${file}: valid AsyncAPI ${document.version()} (${document.channels().length} channels, ${document.operations().length} operations, ${document.messages().length} messages)`);
