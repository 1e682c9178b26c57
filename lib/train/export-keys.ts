/**
 * The configuration keys the exported trainer configs may use: each is defined by the peer's own
 * argument classes (read from their sources), so a config never carries a key the peer would reject.
 *
 * - Hugging Face transformers `TrainingArguments` (the trainer arguments both peers extend).
 * - LLaMA-Factory v0.9 (`src/llamafactory/hparams/`): `ModelArguments` (model_args.py:
 *   model_name_or_path, quantization_bit), `DataArguments` (data_args.py: tokenized_path, cutoff_len,
 *   packing, neat_packing, train_on_prompt, template), `FinetuningArguments` (finetuning_args.py: stage,
 *   finetuning_type, lora_rank, lora_alpha, lora_dropout, lora_target).
 * - TRL 1.x `SFTConfig` (trl/trainer/sft_config.py: max_length, packing, padding_free,
 *   completion_only_loss, dataset_kwargs with skip_prepare_dataset, model_init_kwargs).
 */
const TRAINING_ARGUMENTS = [
  'output_dir',
  'do_train',
  'per_device_train_batch_size',
  'gradient_accumulation_steps',
  'learning_rate',
  'max_steps',
  'num_train_epochs',
  'lr_scheduler_type',
  'warmup_steps',
  'weight_decay',
  'max_grad_norm',
  'seed',
  'bf16',
  'logging_steps',
  'save_steps',
  'deepspeed',
  'report_to',
];

export const LLAMAFACTORY_KEYS: ReadonlySet<string> = new Set([
  ...TRAINING_ARGUMENTS,
  'model_name_or_path',
  'quantization_bit',
  'tokenized_path',
  'cutoff_len',
  'packing',
  'neat_packing',
  'train_on_prompt',
  'template',
  'stage',
  'finetuning_type',
  'lora_rank',
  'lora_alpha',
  'lora_dropout',
  'lora_target',
]);

export const TRL_KEYS: ReadonlySet<string> = new Set([
  ...TRAINING_ARGUMENTS,
  'max_length',
  'packing',
  'padding_free',
  'completion_only_loss',
  'dataset_kwargs',
  'model_init_kwargs',
]);
