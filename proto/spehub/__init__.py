"""SPE Hub common schema (generated code lives in spehub.v1)."""
