"""Where a core meets a task: the LightningModule (``SequenceModel``), callbacks, checkpointing, the CSV log
that survives a resume, and Lightning's CLI (``MannZooCLI``) behind ``mann-zoo fit|validate|test``."""
