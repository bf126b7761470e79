//! The exit codes the reconciliations share, so a cron job reads every one the same way:
//! 0 clean, 2 drift found (repaired or not), 1 the job failed (from the command-line scaffold).

/// Exit code of a run that found no drift.
pub const EXIT_CLEAN: u8 = 0;
/// Exit code of a run that found drift (or, for the stock, a sale it could not judge yet),
/// whether or not `--fix` repaired it.
pub const EXIT_DRIFT: u8 = 2;
