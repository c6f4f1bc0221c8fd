"""Aligning the teacher with what helps this student (ARTE and Montessori-Instruct).

`run.Aligner` carries the steps (drafts, scores, pairs, teacher); `pairs` turns scores
into preference pairs and in-context choices. The drafts are the teacher side's
(`generators.drafts`), the scorers the student side's (`students.preference`,
`students.influence`); this package is where both meet, as the loop is.
"""
