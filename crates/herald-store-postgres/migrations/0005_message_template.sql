-- Which template version made a message, in columns of its own (until now
-- only in the metadata keys `herald.template` and
-- `herald.template_version`, which the API keeps writing). Both set or both
-- NULL.
ALTER TABLE messages
    ADD COLUMN template text,
    ADD COLUMN template_version integer;

-- Messages made from a template before this migration: from their
-- metadata, where both keys are there and the version is a number.
UPDATE messages
   SET template = metadata->>'herald.template',
       template_version = (metadata->>'herald.template_version')::integer
 WHERE jsonb_typeof(metadata->'herald.template') = 'string'
   AND metadata->>'herald.template_version' ~ '^[1-9][0-9]{0,8}$';
