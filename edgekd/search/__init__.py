"""Budget-driven student search: candidates measured on the target as shipped, the ones within budget trained."""
