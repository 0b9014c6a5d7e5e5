"""Statistical methods: privacy auditing and learning from label proportions."""
