/**
 * The models compiled onto the durable core: state machines
 * (src/state-machine), step templates (src/templates), connectors
 * (src/connectors), their diagrams, and the in-process hooks and run
 * controls they are built from. Published as `trellis/models`, not from the
 * main entry: state machines and templates validate with zod, which is an
 * optional peer dependency that only this entry needs (the core takes any
 * Standard Schema). The run controls stay in the main entry too.
 */
import './models-requires-zod4.ts';
export { type Connector, type ConnectorContext, type ConnectorEvent, connectorStep, runConnector, type RunConnectorOptions } from './connectors/connector.ts';
export { outboxConnector, type OutboxConnectorOptions, type OutboxEventPayload } from './connectors/outbox-connector.ts';
export { tableConnector, type TableConnectorOptions } from './connectors/table-connector.ts';
export { connectMachine, MachineClient, type MachineRecord, type TriggerOptions } from './state-machine/client.ts';
export type { MachineOutput, Transition } from './state-machine/compile.ts';
export {
  type MachineConnector, type MachineConnectorApi, type MachineConnectorFn, machineConnectorStep, type MachineConnectorsOptions, runMachineConnectors,
} from './state-machine/connectors.ts';
export { defineStateMachine, type StateMachine, StateMachineBuilder, type StateMachineOptions, type StatusSchema } from './state-machine/define.ts';
export { machineDiagram, type MermaidDirection, type RecordedCall, runPathDiagram } from './state-machine/diagram.ts';
export type {
  CallbackHandler, HandlerResult, MachineHookEvent, MachineHookSink, MachineNode, MachineOutcome, MachineRun, StepHandler, TimeoutHandler, TimeoutWhen,
} from './state-machine/types.ts';
export { connectTemplates, TemplateClient } from './templates/client.ts';
export { type TemplateInput, type TemplateOutput, templateWorkflow } from './templates/compile.ts';
export { templateDiagram } from './templates/diagram.ts';
export {
  createStepRegistry, StepRegistry, type TemplateEnd, type TemplateHookEvent, type TemplateHookFn, type TemplateState,
  type TemplateStepContext, type TemplateStepDefaults, type TemplateStepFn,
} from './templates/registry.ts';
export { parseTemplate, type TemplateDefinition, type TemplateEntry, templateSchema } from './templates/schema.ts';
export { EndRunCancelled, type HookRunInfo, type HookStepInfo, ParkRunRequest, type WorkflowInterceptors } from './workflow/run-control.ts';
