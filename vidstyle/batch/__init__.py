"""Folder processing: stylize every video and image under a folder, resumably, on one
machine or many.

- :mod:`vidstyle.batch.plan`: the items of a folder and their receipts (what is done);
- :mod:`vidstyle.batch.work`: the unit of work, :func:`process_item` (and the chunks of a
  long video), the same in every backend;
- :mod:`vidstyle.batch.run`: the driver, :func:`run_batch`: lock, local and process-pool
  backends, report;
- :mod:`vidstyle.batch.on_ray`: the Ray backend (imported only when chosen).

Crash or kill safety: outputs and receipts appear atomically when complete; the
optimization method keeps finished frames, and a chunked video its finished chunks, in
the item's work folder (``out_dir/.vidstyle-batch/work/<relative path>``), so a killed
item resumes where it stopped; the work folder is removed once the item's receipt is
written (``keep_work=True`` keeps it). A bad input, or any other failure of an item, is
recorded and the batch goes on; the returned :class:`BatchResult` lists the failures.
KeyboardInterrupt stops the batch at once. An output file that exists without a receipt
(not written by a batch) is never replaced unless ``overwrite=True``: that item fails
with a message saying so.
"""

from vidstyle.batch.plan import STATE_DIR, BatchItem, is_done, plan_batch, settings_fingerprint
from vidstyle.batch.run import BatchProgress, BatchResult, run_batch
from vidstyle.batch.work import ItemSettings, Outcome, process_item

__all__ = ["STATE_DIR", "BatchItem", "BatchProgress", "BatchResult", "ItemSettings",
           "Outcome", "is_done", "plan_batch", "process_item", "run_batch",
           "settings_fingerprint"]
