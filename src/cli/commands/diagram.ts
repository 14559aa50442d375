/**
 * `trellis diagram <run>`: the run's recorded path as a Mermaid flowchart;
 * `--template <name>`: a stored template's flowchart; `--machine <name>
 * --module <path>`: the stateDiagram-v2 of a state machine a module exports.
 */
import { templateGet } from '../../db/models.ts';
import { fromKysely } from '../../db/queryable.ts';
import { machineDiagram } from '../../state-machine/diagram.ts';
import { templateDiagram } from '../../templates/diagram.ts';
import type { TemplateDefinition } from '../../templates/schema.ts';
import { integer, runId } from '../args.ts';
import type { Command } from '../command.ts';
import { UsageError } from '../exit-codes.ts';
import { loadMachine } from '../load-machine.ts';
import { runDiagram } from '../mermaid.ts';
import { runDetails } from '../run-details.ts';

export const diagram: Command = {
  name: 'diagram',
  summary: 'print a run\'s recorded path, a stored template or a state machine as a Mermaid diagram',
  args: '<run> | --template <name> | --machine <name> --module <path>',
  description: 'Paste it into a ```mermaid block (GitHub and most Markdown viewers draw it), or: trellis diagram <run> --markdown > run.md\n'
    + 'A machine is drawn from its definition (no database needed): the module (.js, .mjs; .ts with tsx installed in its\n'
    + 'project) is imported as trellis worker imports its module, so it should export the machine without side effects.',
  positionals: [0, 1],
  options: {
    markdown: { type: 'boolean', description: 'wrap it in a ```mermaid fenced block' },
    template: { type: 'string', value: 'NAME', description: 'draw the stored template NAME (trellis.template_set) instead of a run' },
    'template-version': { type: 'string', value: 'N', description: 'with --template: that version (default: the newest)' },
    machine: { type: 'string', value: 'NAME', description: 'draw the state machine NAME (defineStateMachine({ name })) that --module exports' },
    module: { type: 'string', value: 'PATH', description: 'with --machine: the module exporting it, as for trellis worker' },
  },
  async run({ args, options, client, io }) {
    const template = options.template as string | undefined;
    const machine = options.machine as string | undefined;
    const module = options.module as string | undefined;
    if ([args[0], template, machine].filter((x) => x !== undefined).length !== 1) {
      throw new UsageError('give one of a run id, --template NAME or --machine NAME --module PATH');
    }
    if ((machine === undefined) !== (module === undefined)) throw new UsageError('--machine and --module go together');
    let text: string;
    if (machine !== undefined) {
      text = machineDiagram(await loadMachine(module as string, machine));
    } else if (template !== undefined) {
      const version = integer(options['template-version'] as string | undefined, 'template-version', 1, 2_147_483_647, 0);
      const stored = await templateGet(fromKysely((await client()).db), template, version || undefined);
      text = templateDiagram(stored.definition as TemplateDefinition);
    } else {
      text = runDiagram(await runDetails(await client(), runId(args[0]), { signals: false }));
    }
    io.out(options.markdown ? `\`\`\`mermaid\n${text}\`\`\`\n` : text);
  },
};
