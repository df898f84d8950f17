{# One canonical export, read once with every column's type given (bench/canonical.py's schema). #}
{% macro read_export(name, columns) -%}
read_csv('{{ var("folder") }}/{{ name }}.csv', header = true, delim = ',', columns = {{ columns }})
{%- endmacro %}
