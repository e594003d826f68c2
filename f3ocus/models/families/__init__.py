"""One module per VLM family, each exporting a `FamilySpec` (see `f3ocus.models.family`)."""
