/**
 * The API reference in docs/api/, generated from the TSDoc of the public
 * exports (`trellis` and `trellis/testing`) by TypeDoc with
 * typedoc-plugin-markdown (settings in typedoc.json), and the checks that
 * keep it honest:
 *   npm run docs:api            regenerate docs/api
 * test/unit/api-docs.test.ts (in `npm test`) regenerates it into a temporary
 * directory and fails if docs/api differs, if a public function, method or
 * option has no `@example`, or if an example does not typecheck.
 */
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Application, type DeclarationReflection, type ProjectReflection, ReflectionKind, TSConfigReader, TypeDocReader } from 'typedoc';
import ts from 'typescript';

export const root = fileURLToPath(new URL('..', import.meta.url));

/** Convert the sources and write the Markdown reference into `out`. */
export async function generateApiDocs(out: string): Promise<ProjectReflection> {
  const app = await Application.bootstrapWithPlugins({ options: join(root, 'typedoc.json'), out }, [new TypeDocReader(), new TSConfigReader()]);
  const project = await app.convert();
  if (!project) throw new Error('TypeDoc could not convert the sources');
  await rm(out, { recursive: true, force: true });
  await app.generateOutputs(project);
  return project;
}

/** Every file under `dir`, relative to it, with its text. */
export async function readTree(dir: string): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const walk = async (at: string): Promise<void> => {
    for (const entry of await readdir(at, { withFileTypes: true })) {
      const path = join(at, entry.name);
      if (entry.isDirectory()) await walk(path);
      else files.set(relative(dir, path), await readFile(path, 'utf8'));
    }
  };
  await walk(dir);
  return files;
}

/** Interfaces whose every property is an option a user sets: each needs an `@example`. */
const OPTION_TYPES = new Set([
  'ClientOptions', 'WorkerOptions', 'StartOptions', 'ListFilter', 'StepOptions', 'ChildOptions', 'WaitForSignalOptions',
  'WorkflowOptions', 'ActivityOptions', 'RetryPolicy', 'TestEnvOptions', 'DriveOptions', 'EmbeddedPostgresOptions',
]);
/** Interfaces and classes whose methods are the API a user calls: each method needs an `@example`. */
const API_TYPES = new Set(['Client', 'Worker', 'RunHandle', 'WorkflowContext', 'TestEnv']);

export interface Documented {
  /** `module.Name.member`. */
  where: string;
  examples: string[];
}

function examplesOf(reflection: DeclarationReflection): string[] {
  const comments = [reflection.comment, ...(reflection.signatures ?? []).map((s) => s.comment)];
  return comments.flatMap((c) => c?.blockTags.filter((t) => t.tag === '@example') ?? [])
    .map((tag) => tag.content.map((part) => part.text).join(''))
    .map((text) => /```(?:ts|typescript)?\n([\s\S]*?)```/.exec(text)?.[1] ?? text);
}

/** The public functions, methods and options, each with its examples (possibly none). */
export function publicApi(project: ProjectReflection): Documented[] {
  const out: Documented[] = [];
  for (const module of project.children ?? []) {
    for (const item of module.children ?? []) {
      const where = `${module.name}.${item.name}`;
      if (item.kindOf(ReflectionKind.Function)) out.push({ where, examples: examplesOf(item) });
      const members = item.children ?? item.type?.type === 'reflection' ? (item.children ?? []) : [];
      if (OPTION_TYPES.has(item.name)) {
        for (const p of members) if (p.kindOf(ReflectionKind.Property | ReflectionKind.Method)) out.push({ where: `${where}.${p.name}`, examples: examplesOf(p) });
      }
      if (API_TYPES.has(item.name)) {
        for (const m of members) {
          if (m.flags.isPrivate || m.flags.isProtected || m.inheritedFrom) continue;
          const callable = m.kindOf(ReflectionKind.Method) || (m.kindOf(ReflectionKind.Property) && m.type?.type === 'reflection' && (m.type.declaration.signatures?.length ?? 0) > 0);
          if (callable) out.push({ where: `${where}.${m.name}`, examples: examplesOf(m) });
        }
      }
    }
  }
  return out;
}

/** Every `@example` of the public exports (types and fields included). */
export function allExamples(project: ProjectReflection): Documented[] {
  const out: Documented[] = [];
  const visit = (r: DeclarationReflection, where: string) => {
    const examples = examplesOf(r);
    if (examples.length) out.push({ where, examples });
    for (const child of r.children ?? []) visit(child, `${where}.${child.name}`);
  };
  for (const module of project.children ?? []) for (const item of module.children ?? []) visit(item, `${module.name}.${item.name}`);
  return out;
}

/**
 * Typecheck every example, each in an async function of its own after a
 * prelude that imports the public API and declares the names examples use
 * without defining them (a pool, a client, a workflow's ctx, …). Returns
 * the diagnostics, each naming the example's symbol.
 */
export async function typecheckExamples(documented: Documented[]): Promise<string[]> {
  const dir = join(root, 'node_modules', '.cache', `trellis-examples-${process.pid}`);
  await mkdir(dir, { recursive: true });
  const file = join(dir, 'examples.ts');
  const src = join(root, 'src');
  const prelude = (await readFile(join(root, 'scripts', 'api-examples-prelude.ts'), 'utf8'))
    .replaceAll("'../src/", `'${src}/`);
  const owners: { line: number; where: string }[] = [];
  let text = `${prelude}\n`;
  let n = 0;
  for (const { where, examples } of documented) {
    for (const example of examples) {
      owners.push({ line: text.split('\n').length, where });
      // Imports go (the prelude has them), `export` is dropped (a declaration in a function).
      const body = example.replace(/^import .*$/gm, '').replace(/^export /gm, '');
      text += `export async function example${++n}() {\n${body}\n}\n`;
    }
  }
  await writeFile(file, text);
  try {
    const config = ts.getParsedCommandLineOfConfigFile(join(root, 'tsconfig.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => undefined });
    const program = ts.createProgram([file], { ...config?.options, noEmit: true, noUnusedLocals: false });
    return ts.getPreEmitDiagnostics(program).filter((d) => d.file?.fileName === file).map((d) => {
      const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line + 1 : 0;
      const owner = [...owners].reverse().find((o) => o.line <= line);
      return `${owner?.where ?? 'prelude'}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')} (line ${line - (owner?.line ?? 0)} of the example)`;
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const out = join(root, 'docs', 'api');
  await generateApiDocs(out);
  console.log(`wrote ${relative(root, out)}`);
}
