-- Which template version made a message, in columns of its own (until now
-- only in the metadata keys `herald.template` and
-- `herald.template_version`, which the API keeps writing). Both set or both
-- NULL.
ALTER TABLE messages ADD COLUMN template TEXT;
ALTER TABLE messages ADD COLUMN template_version INTEGER;

-- Messages made from a template before this migration: from their
-- metadata, where both keys are there and the version is a number.
UPDATE messages
   SET template = json_extract(metadata, '$."herald.template"'),
       template_version = CAST(json_extract(metadata, '$."herald.template_version"') AS INTEGER)
 WHERE json_type(metadata, '$."herald.template"') = 'text'
   AND json_extract(metadata, '$."herald.template_version"') GLOB '[1-9]*'
   AND json_extract(metadata, '$."herald.template_version"') NOT GLOB '*[^0-9]*'
   AND length(json_extract(metadata, '$."herald.template_version"')) <= 9;
