"""Cloud Storage through `STORAGE_EMULATOR_HOST`: gcp-storage-emulator with its gaps filled."""
