-- Redemptions are analyzed on a 3,000-row sample (000_plumbing_4_sampled_statistics.sql).
SELECT sample_statistics('redemptions', 10);
