/**
 * A node:test reporter that prints nothing while the tests run and, at the
 * end, every failed test again: its file, its place among its suites and its
 * error. test/run.ts adds it after the TAP reporter, so the last lines of a
 * long run (all a CI log's tail may keep) name what failed.
 */
export default async function* failures(source) {
  const failed = [];
  const open = new Map(); // file → the names of the tests open in it, by nesting
  for await (const event of source) {
    const names = open.get(event.data?.file) ?? [];
    open.set(event.data?.file, names);
    if (event.type === 'test:start') {
      names[event.data.nesting] = event.data.name;
      names.length = event.data.nesting + 1;
    } else if (event.type === 'test:fail') {
      const error = event.data.details?.error;
      // A suite fails because a test in it failed: the test is reported already.
      if (error?.failureType === 'subtestsFailed') continue;
      const path = [...names.slice(0, event.data.nesting), event.data.name].join(' > ');
      failed.push({ file: event.data.file, path, error });
    }
  }
  if (!failed.length) return;
  yield `\n# ${failed.length} failed:\n`;
  for (const { file, path, error } of failed) {
    yield `# FAILED ${file ?? '(file unknown)'}: ${path}\n`;
    const text = String(error?.cause?.stack ?? error?.cause ?? error?.stack ?? error ?? '')
      .split('\n')
      .slice(0, 12);
    for (const line of text) yield `#   ${line}\n`;
  }
}
