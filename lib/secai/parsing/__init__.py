"""Reading scanner reports: the formats, the finding builder, report reading and dedup."""
