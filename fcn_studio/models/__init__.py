"""Model bookkeeping: which weights a prediction came from (ModelSpec, ModelId),
the versions in a project, the one fine-tune plan, and GPU-server job export."""
